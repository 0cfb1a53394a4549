//! Writes one slice of a partition's records in one transaction, for every
//! route of its topic: the session settings and the fence first (so a
//! stale worker writes nothing), then each route's rows and dead letters
//! in route order (sink::writer), then COMMIT, each phase timed
//! (`sluice_pg_transaction_phase_seconds`). The routes of a topic share
//! the partition's offset, so their tables always agree: a record is in
//! all of them (or dead-lettered for the route that refused it), or, the
//! transaction having failed, in none.

use deadpool_postgres::Transaction;

use super::attempt::{Attempt, Slice, WriteStats};
use super::error::SinkError;
use super::writer::TableWriter;
use crate::config::PostgresConfig;
use crate::metrics::{Phase, PhaseClock, TransactionPhases};
use crate::offsets::OffsetStore;

/// The routes of one topic, in config order.
#[derive(Debug)]
pub struct TopicWriter {
    routes: Vec<TableWriter>,
    /// `SET LOCAL` of the session settings, first in every transaction.
    settings: String,
}

/// A failed attempt, with the route whose statement failed (`None`: the
/// settings, the fence, or the transaction itself).
#[derive(Debug)]
pub struct Failure {
    pub route: Option<usize>,
    pub error: SinkError,
}

impl From<SinkError> for Failure {
    fn from(error: SinkError) -> Self {
        Failure { route: None, error }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        SinkError::from(error).into()
    }
}

impl TopicWriter {
    /// `routes` is not empty.
    pub fn new(routes: Vec<TableWriter>, pg: &PostgresConfig) -> TopicWriter {
        debug_assert!(!routes.is_empty());
        TopicWriter {
            routes,
            settings: crate::pg::transaction_settings(pg),
        }
    }

    pub fn routes(&self) -> &[TableWriter] {
        &self.routes
    }

    /// One attempt at writing `slice` in one transaction, its phases timed
    /// on `phases`. Committed: one `WriteStats` per route, in route order.
    pub async fn write(
        &self,
        client: &mut deadpool_postgres::Client,
        offsets: &OffsetStore,
        slice: &Slice<'_>,
        phases: &TransactionPhases,
    ) -> Result<Attempt, Failure> {
        if slice.refused.is_empty() {
            // The earliest record some `on_error: stop` route cannot decode.
            let rejected = self
                .routes
                .iter()
                .filter_map(|route| route.first_rejected(slice))
                .min_by_key(|(index, _)| *index);
            if let Some((index, reason)) = rejected {
                return Ok(Attempt::Rejected { index, reason });
            }
        }
        let txn = client.transaction().await?;
        // Observed when dropped: also when the attempt fails, or is
        // abandoned at its deadline mid-phase.
        let mut clock = phases.clock();
        let written = self.write_in(&txn, offsets, slice, &mut clock).await;
        // A failed phase ends with its error; the rollback is no phase's.
        clock.stop();
        match written {
            Ok(Some(stats)) => {
                clock.start(Phase::Commit);
                txn.commit().await?;
                Ok(Attempt::Committed(stats))
            }
            Ok(None) => {
                txn.rollback().await?;
                Ok(Attempt::Fenced)
            }
            Err(e) => {
                // Rolled back, and answered, before the connection goes back
                // to the pool. A Transaction dropped mid-way only queues its
                // ROLLBACK, so the pool's writability check would follow it
                // in the same flight; a transaction-pooling PgBouncer (1.18)
                // hands the server connection on at the ROLLBACK's reply and
                // drops the check's answer ("got packet from server when not
                // linked"), leaving the check to time out. The rollback's own
                // error adds nothing: the connection is judged by `e`.
                let _ = txn.rollback().await;
                Err(e)
            }
        }
    }

    /// The statements of one attempt in `txn`: `None` when the fence held
    /// the batch back, else what each route wrote (the caller commits).
    async fn write_in(
        &self,
        txn: &Transaction<'_>,
        offsets: &OffsetStore,
        slice: &Slice<'_>,
        clock: &mut PhaseClock<'_>,
    ) -> Result<Option<Vec<WriteStats>>, Failure> {
        // Sent together (one round trip): the settings, then the fence.
        clock.start(Phase::Fence);
        let (_, advanced) = futures::try_join!(
            txn.batch_execute(&self.settings),
            offsets.advance(
                &**txn,
                slice.key,
                slice.owner,
                slice.start,
                slice.end(),
                slice.records.last().and_then(|r| r.timestamp_ms),
            ),
        )?;
        if !advanced {
            return Ok(None);
        }
        let mut all = Vec::with_capacity(self.routes.len());
        for (index, route) in self.routes.iter().enumerate() {
            let stats = route
                .write_rows(txn, slice, slice.refused_by(index), clock)
                .await
                .map_err(|error| Failure {
                    route: Some(index),
                    error,
                })?;
            all.push(stats);
        }
        Ok(Some(all))
    }
}
