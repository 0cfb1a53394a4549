//! A halted partition: held by its worker, writing nothing, until stopped
//! (a bad record under `on_error: stop`, a poison storm, or a stored offset
//! outside the log). Recorded in `<state_schema>.halts` for `sluice check`,
//! fenced like a commit, and reported by `/readyz`.

use tracing::info;

use super::worker::{Exit, PartitionWorker};
use crate::backoff::Backoff;
use crate::sink::error::{ErrorClass, SinkError};

impl PartitionWorker {
    /// Holds the partition without writing until stopped, so that nothing
    /// goes past `offset` (a bad record, or a stored offset outside the
    /// log); records why for `sluice check` and `/readyz`.
    pub(super) async fn halt(&self, offset: i64, reason: String, sqlstate: Option<String>) -> Exit {
        let shared = &self.shared;
        shared.set_halted(
            &self.key,
            Some(format!("halted before offset {offset}: {reason}")),
        );
        let mut backoff = Backoff::new(shared.retry.initial_backoff, shared.retry.max_backoff);
        loop {
            let recorded: Result<bool, SinkError> = async {
                let client = shared.pool.get().await?;
                let code = sqlstate.as_deref();
                Ok(shared
                    .offsets
                    .record_halt(&**client, &self.key, self.owner, offset, &reason, code)
                    .await?)
            }
            .await;
            match recorded {
                Ok(true) => break,
                // Fenced out meanwhile: the partition's new owner decides.
                Ok(false) => {
                    shared.set_halted(&self.key, None);
                    info!(partition = %self.key, "halt not recorded: another worker owns the partition now");
                    return Exit::Stale { owner: None };
                }
                Err(e) if e.class() == ErrorClass::Retry => {
                    if !backoff.wait(&self.stop).await {
                        break;
                    }
                }
                Err(e) => return Exit::Failed(e.into()),
            }
        }
        self.stop.cancelled().await;
        shared.set_halted(&self.key, None);
        Exit::Stopped
    }
}
