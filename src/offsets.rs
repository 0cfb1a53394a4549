//! The offset store: each partition's next offset lives in Postgres, in
//! `<state_schema>.offsets`, and is advanced inside the batch's transaction.
//!
//! Fencing (see docs/ARCHITECTURE.md): a worker *claims* a partition by
//! writing a fresh owner token into its row; every commit advances the row only
//! if it still holds that owner **and** the offset the batch started from. A
//! commit that touches no row is judged by [`judge`]: a stale worker stops, an
//! earlier commit whose reply was lost is recognised, and a database that lost
//! commits is refilled from its stored offset.

// Unnamed statements (`*_typed`) only: a named prepared statement lives on
// a server connection, which a transaction-pooling PgBouncer shares among
// clients between transactions (docs/operations.md, "PgBouncer").
use tokio_postgres::types::Type;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::config::quote_ident;

/// Identifies one partition's row in the offsets table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    pub group_id: String,
    pub topic: String,
    pub partition: i32,
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// What a commit that did not pass the fence means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceVerdict {
    /// Another worker claimed the partition (or its row was removed): this
    /// worker must stop and never write again.
    Stale { owner: Option<Uuid> },
    /// This very batch was committed by an earlier attempt whose reply was
    /// lost; carry on as if this attempt had succeeded.
    AlreadyCommitted,
    /// The row is ours but holds another offset (the database lost commits,
    /// e.g. after an asynchronous-replica failover): resume from it.
    Rewound { next_offset: Option<i64> },
}

/// Decides what a failed fence means from the row as it stands now.
pub fn judge(me: Uuid, end: i64, row: Option<(Uuid, Option<i64>)>) -> FenceVerdict {
    match row {
        None => FenceVerdict::Stale { owner: None },
        Some((owner, _)) if owner != me => FenceVerdict::Stale { owner: Some(owner) },
        Some((_, Some(next))) if next == end => FenceVerdict::AlreadyCommitted,
        Some((_, next_offset)) => FenceVerdict::Rewound { next_offset },
    }
}

/// SQL for the offsets table of one state schema.
#[derive(Debug, Clone)]
pub struct OffsetStore {
    claim_sql: String,
    advance_sql: String,
    read_sql: String,
    halt_sql: String,
    seed_sql: String,
    settle_sql: String,
}

/// A partition's row as a claim found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The stored next offset (`None`: nothing committed yet).
    pub next_offset: Option<i64>,
    /// The Kafka cluster the stored offset belongs to (`None`: not known,
    /// the brokers did not say).
    pub cluster_id: Option<String>,
    /// The row had an offset but no cluster (written before sluice stored
    /// clusters) and took the connected one now.
    pub adopted: bool,
}

/// The latest Kafka timestamp stored as a record's time:
/// 9999-12-31T23:59:59.999Z, within what a `timestamptz` holds.
pub const MAX_RECORD_MS: i64 = 253_402_300_799_999;

/// The owner of a row seeded for a partition nobody has claimed yet.
pub const UNCLAIMED: Uuid = Uuid::nil();

impl OffsetStore {
    pub fn new(state_schema: &str) -> OffsetStore {
        let schema = quote_ident(state_schema);
        let table = format!("{schema}.offsets");
        // A row seeded for `start_from: latest` is unowned (the nil token):
        // the first claim takes it like any other row.
        let unclaimed = UNCLAIMED;
        OffsetStore {
            // Taking the row lock makes a claim wait for the previous owner's
            // in-flight commit, so the offset it returns is the latest one.
            // `before` sees the row as it was (its cluster, to log an
            // adoption). The cluster is kept unless the row had none or no
            // offset yet: a stored offset keeps the cluster it belongs to
            // until `sluice offsets set` moves it (Shared::claim halts on a
            // mismatch).
            claim_sql: format!(
                "WITH unhalt AS (DELETE FROM {schema}.halts \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3), \
                 before AS (SELECT cluster_id, next_offset FROM {table} \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3) \
                 INSERT INTO {table} AS o (group_id, topic, partition, next_offset, owner, cluster_id) \
                 VALUES ($1, $2, $3, NULL, $4, $5) \
                 ON CONFLICT (group_id, topic, partition) \
                 DO UPDATE SET owner = EXCLUDED.owner, claimed_at = now(), \
                 cluster_id = CASE WHEN o.cluster_id IS NULL OR o.next_offset IS NULL \
                 THEN COALESCE(EXCLUDED.cluster_id, o.cluster_id) ELSE o.cluster_id END \
                 RETURNING next_offset, cluster_id, \
                 (SELECT b.cluster_id IS NULL AND b.next_offset IS NOT NULL FROM before b)"
            ),
            // The last record's Kafka timestamp goes with its offset, for
            // `sluice offsets set --to translate`.
            advance_sql: format!(
                "UPDATE {table} SET next_offset = $5, updated_at = now(), \
                 last_record_at = COALESCE(timestamptz 'epoch' + $7 * interval '1 millisecond', \
                 last_record_at) \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3 \
                 AND owner = $4 AND next_offset IS NOT DISTINCT FROM $6"
            ),
            read_sql: format!(
                "SELECT owner, next_offset FROM {table} \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3"
            ),
            // Fenced like a commit: only the partition's current owner may
            // record a halt, so a stale worker cannot re-insert one after
            // the new owner's claim cleared it.
            halt_sql: format!(
                "INSERT INTO {schema}.halts (group_id, topic, partition, \"offset\", error, sqlstate) \
                 SELECT $1::text, $2::text, $3::int4, $4::int8, $5::text, $6::text WHERE EXISTS (SELECT 1 FROM {table} \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3 AND owner = $7) \
                 ON CONFLICT (group_id, topic, partition) \
                 DO UPDATE SET \"offset\" = EXCLUDED.\"offset\", error = EXCLUDED.error, \
                 sqlstate = EXCLUDED.sqlstate, halted_at = now()"
            ),
            // Only while no partition of the topic has an offset: once one
            // has, the topic is known and a partition without one is new.
            // Concurrent seeders conflict on the rows; the loser's update
            // finds them set and does nothing.
            seed_sql: format!(
                "INSERT INTO {table} AS t (group_id, topic, partition, next_offset, owner) \
                 SELECT $1::text, $2::text, s.p, s.o, '{unclaimed}'::uuid \
                 FROM unnest($3::int4[], $4::int8[]) AS s(p, o) \
                 WHERE NOT EXISTS (SELECT 1 FROM {table} \
                   WHERE group_id = $1 AND topic = $2 AND next_offset IS NOT NULL) \
                 ON CONFLICT (group_id, topic, partition) \
                 DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now() \
                 WHERE t.next_offset IS NULL"
            ),
            settle_sql: format!(
                "UPDATE {table} SET next_offset = COALESCE(next_offset, $5), updated_at = now() \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3 AND owner = $4 \
                 RETURNING next_offset"
            ),
        }
    }

    /// Makes `owner` the partition's only writer and returns what is
    /// stored: the next offset (`None` when nothing was ever committed for
    /// it) and the Kafka cluster it belongs to. `cluster` is the cluster
    /// connected now, adopted by a row that has none.
    pub async fn claim(
        &self,
        client: &impl GenericClient,
        key: &PartitionKey,
        owner: Uuid,
        cluster: Option<&str>,
    ) -> Result<Claimed, tokio_postgres::Error> {
        let row = client
            .query_typed_one(
                &self.claim_sql,
                &[
                    (&key.group_id, Type::TEXT),
                    (&key.topic, Type::TEXT),
                    (&key.partition, Type::INT4),
                    (&owner, Type::UUID),
                    (&cluster, Type::TEXT),
                ],
            )
            .await?;
        Ok(Claimed {
            next_offset: row.try_get(0)?,
            cluster_id: row.try_get(1)?,
            adopted: row.try_get::<_, Option<bool>>(2)?.unwrap_or(false) && cluster.is_some(),
        })
    }

    /// Inside a batch transaction (or alone, for a stored offset moved by
    /// `on_offset_out_of_range`): moves the offset from `start` to `end` if
    /// `owner` still holds the partition. `false` means the fence held the
    /// write back; the caller rolls back and asks [`OffsetStore::read`] why.
    pub async fn advance(
        &self,
        client: &impl GenericClient,
        key: &PartitionKey,
        owner: Uuid,
        start: Option<i64>,
        end: i64,
        last_record_ms: Option<i64>,
    ) -> Result<bool, tokio_postgres::Error> {
        // A record's timestamp is whatever its producer set; one Postgres
        // cannot hold (SQLSTATE 22008) must not fail the batch's commit.
        // Such a time keeps the last one that fits.
        let last_record_ms = last_record_ms.filter(|ms| (0..=MAX_RECORD_MS).contains(ms));
        let n = client
            .execute_typed(
                &self.advance_sql,
                &[
                    (&key.group_id, Type::TEXT),
                    (&key.topic, Type::TEXT),
                    (&key.partition, Type::INT4),
                    (&owner, Type::UUID),
                    (&end, Type::INT8),
                    (&start, Type::INT8),
                    (&last_record_ms, Type::INT8),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Records that the partition halted before the record at `offset`;
    /// `false` when `owner` no longer holds the partition (nothing written).
    pub async fn record_halt(
        &self,
        client: &impl GenericClient,
        key: &PartitionKey,
        owner: Uuid,
        offset: i64,
        error: &str,
        sqlstate: Option<&str>,
    ) -> Result<bool, tokio_postgres::Error> {
        let n = client
            .execute_typed(
                &self.halt_sql,
                &[
                    (&key.group_id, Type::TEXT),
                    (&key.topic, Type::TEXT),
                    (&key.partition, Type::INT4),
                    (&offset, Type::INT8),
                    (&error, Type::TEXT),
                    (&sqlstate, Type::TEXT),
                    (&owner, Type::UUID),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// `start_from: latest` on a topic this group never wrote: stores the
    /// current log end of every partition the topic has (`ends`), so that
    /// "latest" is decided once for the topic, and a partition added to it
    /// later, which has no row, is known to be new. Does nothing once any
    /// partition of the topic has an offset. Returns the rows written.
    pub async fn seed(
        &self,
        client: &impl GenericClient,
        group_id: &str,
        topic: &str,
        ends: &[(i32, i64)],
    ) -> Result<u64, tokio_postgres::Error> {
        let (partitions, offsets): (Vec<i32>, Vec<i64>) = ends.iter().copied().unzip();
        client
            .execute_typed(
                &self.seed_sql,
                &[
                    (&group_id, Type::TEXT),
                    (&topic, Type::TEXT),
                    (&partitions, Type::INT4_ARRAY),
                    (&offsets, Type::INT8_ARRAY),
                ],
            )
            .await
    }

    /// Stores `start` as the partition's next offset unless it has one;
    /// returns the offset stored now (`None` when `owner` lost the claim).
    pub async fn settle(
        &self,
        client: &impl GenericClient,
        key: &PartitionKey,
        owner: Uuid,
        start: i64,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        let row = client
            .query_typed_opt(
                &self.settle_sql,
                &[
                    (&key.group_id, Type::TEXT),
                    (&key.topic, Type::TEXT),
                    (&key.partition, Type::INT4),
                    (&owner, Type::UUID),
                    (&start, Type::INT8),
                ],
            )
            .await?;
        row.map(|r| r.try_get(0)).transpose().map(Option::flatten)
    }

    /// The partition's row as it stands: `(owner, next_offset)`.
    pub async fn read(
        &self,
        client: &impl GenericClient,
        key: &PartitionKey,
    ) -> Result<Option<(Uuid, Option<i64>)>, tokio_postgres::Error> {
        let row = client
            .query_typed_opt(
                &self.read_sql,
                &[
                    (&key.group_id, Type::TEXT),
                    (&key.topic, Type::TEXT),
                    (&key.partition, Type::INT4),
                ],
            )
            .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let me = Uuid::new_v4();
        let other = Uuid::new_v4();
        assert_eq!(judge(me, 10, None), FenceVerdict::Stale { owner: None });
        assert_eq!(
            judge(me, 10, Some((other, Some(10)))),
            FenceVerdict::Stale { owner: Some(other) }
        );
        assert_eq!(
            judge(me, 10, Some((me, Some(10)))),
            FenceVerdict::AlreadyCommitted
        );
        assert_eq!(
            judge(me, 10, Some((me, Some(3)))),
            FenceVerdict::Rewound {
                next_offset: Some(3)
            }
        );
        assert_eq!(
            judge(me, 10, Some((me, None))),
            FenceVerdict::Rewound { next_offset: None }
        );
    }
}
