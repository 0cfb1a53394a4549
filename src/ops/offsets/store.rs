//! `sluice offsets`' side of the state schema: the offset rows of the
//! configured group, read, and moved in one transaction that holds each
//! row's lock and refuses to move a row that changed since it was read.
//! Unnamed statements only (`query_typed`): sluice may sit behind a
//! transaction-pooling PgBouncer.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::config::{quote_ident, Config};
use crate::offsets::UNCLAIMED;
use crate::ops::OpsError;

/// A partition, as (topic, partition); ordered for the listing.
pub type Partition = (String, i32);

/// A partition's row in `offsets` (and its halt).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `None`: claimed, but no start stored yet.
    pub next_offset: Option<i64>,
    /// The Kafka cluster the offset belongs to.
    pub cluster_id: Option<String>,
    /// The worker holding the partition; `None` when unclaimed (seeded,
    /// or moved by `sluice offsets set`).
    #[serde(serialize_with = "owner_text")]
    pub owner: Uuid,
    #[serde(serialize_with = "time_text")]
    pub claimed_at: SystemTime,
    /// The last commit (or the last move).
    #[serde(serialize_with = "time_text")]
    pub updated_at: SystemTime,
    /// The Kafka timestamp of the last record written.
    #[serde(serialize_with = "opt_time_text")]
    pub last_record_at: Option<SystemTime>,
    /// The offset the partition halted before, if it is halted.
    pub halted_at_offset: Option<i64>,
}

fn owner_text<S: serde::Serializer>(owner: &Uuid, s: S) -> Result<S::Ok, S::Error> {
    match *owner == UNCLAIMED {
        true => s.serialize_none(),
        false => s.serialize_str(&owner.to_string()),
    }
}

fn time_text<S: serde::Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*at).to_string())
}

fn opt_time_text<S: serde::Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => time_text(at, s),
        None => s.serialize_none(),
    }
}

/// SQLSTATE undefined_table and undefined_column: the state schema is
/// missing or older than this sluice.
const UNDEFINED_TABLE: &str = "42P01";
const UNDEFINED_COLUMN: &str = "42703";

fn not_migrated(config: &Config, e: &tokio_postgres::Error) -> Option<OpsError> {
    let code = e.code().map(|c| c.code())?;
    let schema = &config.postgres.state_schema;
    match code {
        UNDEFINED_TABLE => Some(OpsError::Plan(format!(
            "postgres.state_schema: schema {schema} has no offsets table: \
             run `sluice migrate --config <file>` first"
        ))),
        UNDEFINED_COLUMN => Some(OpsError::Plan(format!(
            "postgres.state_schema: the offsets table in {schema} is older than this \
             sluice (no cluster_id): run `sluice migrate --config <file>` first"
        ))),
        _ => None,
    }
}

/// The rows of `config.kafka.group_id`, with their halts.
pub async fn read(client: &Client, config: &Config) -> Result<BTreeMap<Partition, Row>, OpsError> {
    let schema = quote_ident(&config.postgres.state_schema);
    let sql = format!(
        "SELECT o.topic, o.partition, o.next_offset, o.cluster_id, o.owner, o.claimed_at, \
         o.updated_at, o.last_record_at, h.\"offset\" \
         FROM {schema}.offsets o LEFT JOIN {schema}.halts h \
         USING (group_id, topic, partition) WHERE o.group_id = $1"
    );
    let rows = client
        .query_typed(&sql, &[(&config.kafka.group_id, Type::TEXT)])
        .await
        .map_err(|e| not_migrated(config, &e).unwrap_or_else(|| e.into()))?;
    let mut out = BTreeMap::new();
    for r in rows {
        out.insert(
            (r.try_get(0)?, r.try_get(1)?),
            Row {
                next_offset: r.try_get(2)?,
                cluster_id: r.try_get(3)?,
                owner: r.try_get(4)?,
                claimed_at: r.try_get(5)?,
                updated_at: r.try_get(6)?,
                last_record_at: r.try_get(7)?,
                halted_at_offset: r.try_get(8)?,
            },
        );
    }
    Ok(out)
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub partition: Partition,
    /// The row's offset when it was read (`None` inside: the row had none;
    /// `None`: there was no row).
    pub was: Option<Option<i64>>,
    /// The cluster of the offset when it was read.
    pub was_cluster: Option<String>,
    pub to: i64,
    /// The cluster the new offset belongs to.
    pub cluster_id: Option<String>,
}

/// Whether a row that went from `was` to `now` between the read and the
/// lock still gets the move planned for it. A running replica only
/// advances its offset, and its next commit is refused by the fence once
/// the row is moved, so the move stands as long as it is the same kind of
/// move: a skip forward still skips forward (the replica has not written
/// past the target), a move back still moves back. Otherwise the plan's
/// decision (what is skipped, whether a route duplicates) no longer holds.
pub fn still_planned(was: Option<Option<i64>>, now: Option<Option<i64>>, to: i64) -> bool {
    match (was, now) {
        (Some(Some(w)), Some(Some(n))) => w.cmp(&to) == n.cmp(&to),
        (w, n) => w == n,
    }
}

/// Writes the moves in one transaction, or none of them: each row is
/// locked (a running worker's commit waits, then fails its fence: the row
/// is unclaimed, so the worker reads the new offset when it claims the
/// partition again); a row that changed since it was read so that the
/// move is no longer the one planned ([`still_planned`], or another
/// cluster) stops the whole move. `dry_run` rolls the transaction back.
/// Returns each row's offset as locked: where the move starts from.
pub async fn write(
    client: &mut Client,
    config: &Config,
    moves: &[Move],
    dry_run: bool,
) -> Result<Vec<Option<i64>>, OpsError> {
    let schema = quote_ident(&config.postgres.state_schema);
    let group = &config.kafka.group_id;
    let lock_sql = format!(
        "SELECT next_offset, cluster_id FROM {schema}.offsets \
         WHERE group_id = $1 AND topic = $2 AND partition = $3 FOR UPDATE"
    );
    // Unclaimed, like a seeded row: the next claim takes it. The last
    // record's time is the old position's; none is known for the new one.
    let upsert_sql = format!(
        "INSERT INTO {schema}.offsets AS o (group_id, topic, partition, next_offset, owner, cluster_id) \
         VALUES ($1, $2, $3, $4, '{UNCLAIMED}'::uuid, $5) \
         ON CONFLICT (group_id, topic, partition) DO UPDATE SET \
         next_offset = EXCLUDED.next_offset, owner = EXCLUDED.owner, \
         cluster_id = EXCLUDED.cluster_id, claimed_at = now(), updated_at = now(), \
         last_record_at = NULL"
    );
    let unhalt_sql =
        format!("DELETE FROM {schema}.halts WHERE group_id = $1 AND topic = $2 AND partition = $3");
    let tx = client.transaction().await?;
    let mut from = Vec::with_capacity(moves.len());
    for m in moves {
        let (topic, partition) = &m.partition;
        let key: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 3] = [
            (group, Type::TEXT),
            (topic, Type::TEXT),
            (partition, Type::INT4),
        ];
        let locked = tx
            .query_typed(&lock_sql, &key)
            .await
            .map_err(|e| not_migrated(config, &e).unwrap_or_else(|| e.into()))?;
        let (now, now_cluster) = match locked.first() {
            Some(r) => (Some(r.try_get::<_, Option<i64>>(0)?), r.try_get(1)?),
            None => (None, None),
        };
        let show = |o: Option<Option<i64>>| match o {
            None => "no row".to_string(),
            Some(None) => "no offset".to_string(),
            Some(Some(n)) => n.to_string(),
        };
        if !still_planned(m.was, now, m.to) {
            return Err(OpsError::Plan(format!(
                "the stored offset of {topic}[{partition}] moved from {} to {} while this \
                 command ran, past the new offset {}: a sluice is still writing it. Stop \
                 sluice (every replica of group {group}) or run the command again; nothing \
                 was changed",
                show(m.was),
                show(now),
                m.to
            )));
        }
        if now.is_some() && now_cluster != m.was_cluster {
            return Err(OpsError::Plan(format!(
                "the stored offset of {topic}[{partition}] changed cluster ({} to {}) while \
                 this command ran: a sluice is still claiming it. Stop sluice (every replica \
                 of group {group}) first; nothing was changed",
                m.was_cluster.as_deref().unwrap_or("none"),
                now_cluster.as_deref().unwrap_or("none")
            )));
        }
        from.push(now.flatten());
        tx.execute_typed(
            &upsert_sql,
            &[
                (group, Type::TEXT),
                (topic, Type::TEXT),
                (partition, Type::INT4),
                (&m.to, Type::INT8),
                (&m.cluster_id, Type::TEXT),
            ],
        )
        .await
        .map_err(|e| not_migrated(config, &e).unwrap_or_else(|| e.into()))?;
        tx.execute_typed(&unhalt_sql, &key).await?;
    }
    match dry_run {
        true => tx.rollback().await?,
        false => tx.commit().await?,
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::still_planned;

    #[test]
    fn a_row_that_moved_keeps_its_move_while_the_move_is_the_same_kind() {
        // A replica wrote on, still short of the target: still a skip.
        assert!(still_planned(Some(Some(100)), Some(Some(300)), 4_000));
        // It reached or passed the target: no longer what was planned.
        assert!(!still_planned(Some(Some(100)), Some(Some(4_000)), 4_000));
        assert!(!still_planned(Some(Some(100)), Some(Some(4_100)), 4_000));
        // Back stays back; unchanged rows always hold.
        assert!(still_planned(Some(Some(900)), Some(Some(950)), 10));
        assert!(still_planned(Some(Some(10)), Some(Some(10)), 10));
        // A row that appeared, lost its offset, or was deleted.
        assert!(!still_planned(None, Some(Some(5)), 10));
        assert!(!still_planned(Some(None), Some(Some(5)), 10));
        assert!(!still_planned(Some(Some(5)), None, 10));
        assert!(still_planned(None, None, 10));
    }
}
