//! What `sluice status` reads from sluice's state schema: each partition's
//! offset row, its halt, and the dead letters per route — for the
//! configured consumer group only.

use std::collections::HashMap;
use std::time::SystemTime;

use tokio_postgres::types::Type;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::config::{quote_ident, Config};
use crate::ops::OpsError;

/// A partition, as (topic, partition).
pub type Partition = (String, i32);

/// A partition's row in `offsets`.
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetRow {
    /// `None`: claimed, but no start stored yet.
    pub next_offset: Option<i64>,
    pub owner: Uuid,
    pub updated_at: SystemTime,
    pub cluster_id: Option<String>,
    pub last_record_at: Option<SystemTime>,
}

/// A partition's row in `halts`.
#[derive(Debug, Clone, PartialEq)]
pub struct HaltRow {
    pub offset: i64,
    pub error: String,
    pub sqlstate: Option<String>,
    pub halted_at: SystemTime,
}

/// Dead letters of one route: (in the last hour, in total).
pub type DeadCounts = (i64, i64);

/// Everything the state schema says.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub offsets: HashMap<Partition, OffsetRow>,
    pub halts: HashMap<Partition, HaltRow>,
    pub dead_letters: HashMap<String, DeadCounts>,
    /// The state tables are not there yet (sluice never ran, or
    /// `postgres.state_schema` names another schema): nothing is stored.
    pub schema_missing: bool,
}

/// SQLSTATE undefined_table: the state schema was never migrated.
const UNDEFINED_TABLE: &str = "42P01";

/// Reads the state of `config.kafka.group_id`. Unnamed statements only
/// (`query_typed`): sluice may sit behind a transaction-pooling PgBouncer.
pub async fn read(client: &Client, config: &Config) -> Result<Stored, OpsError> {
    let schema = quote_ident(&config.postgres.state_schema);
    let group = &config.kafka.group_id;
    let mut stored = Stored::default();
    // Through to_jsonb: a state schema older than migration 4 has neither
    // column, and a status must still work against it.
    let offsets_sql = format!(
        "SELECT topic, partition, next_offset, owner, updated_at, \
         to_jsonb(o) ->> 'cluster_id', (to_jsonb(o) ->> 'last_record_at')::timestamptz \
         FROM {schema}.offsets o WHERE group_id = $1"
    );
    let rows = match client
        .query_typed(&offsets_sql, &[(group, Type::TEXT)])
        .await
    {
        Ok(rows) => rows,
        Err(e) if e.code().map(|c| c.code()) == Some(UNDEFINED_TABLE) => {
            stored.schema_missing = true;
            return Ok(stored);
        }
        Err(e) => return Err(e.into()),
    };
    for r in rows {
        stored.offsets.insert(
            (r.try_get(0)?, r.try_get(1)?),
            OffsetRow {
                next_offset: r.try_get(2)?,
                owner: r.try_get(3)?,
                updated_at: r.try_get(4)?,
                cluster_id: r.try_get(5)?,
                last_record_at: r.try_get(6)?,
            },
        );
    }
    let halts_sql = format!(
        "SELECT topic, partition, \"offset\", error, sqlstate, halted_at \
         FROM {schema}.halts WHERE group_id = $1"
    );
    for r in client
        .query_typed(&halts_sql, &[(group, Type::TEXT)])
        .await?
    {
        stored.halts.insert(
            (r.try_get(0)?, r.try_get(1)?),
            HaltRow {
                offset: r.try_get(2)?,
                error: r.try_get(3)?,
                sqlstate: r.try_get(4)?,
                halted_at: r.try_get(5)?,
            },
        );
    }
    // The hour is the server's: its clock stamped failed_at.
    let dead_sql = format!(
        "SELECT route, count(*) FILTER (WHERE failed_at >= now() - interval '1 hour'), count(*) \
         FROM {schema}.dead_letters WHERE group_id = $1 GROUP BY route"
    );
    for r in client
        .query_typed(&dead_sql, &[(group, Type::TEXT)])
        .await?
    {
        stored
            .dead_letters
            .insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
    }
    Ok(stored)
}
