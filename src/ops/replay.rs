//! `sluice dead-letters replay`: after the cause was fixed, writes selected
//! dead letters through their route's own decode and write path and
//! removes each dead letter in the same transaction, exactly once.
//!
//! One transaction per dead letter: it deletes the dead letter first
//! (`DELETE … RETURNING`, which locks it: a second replay running at the
//! same time waits, then finds it gone and skips it), writes the record as
//! the route would (with its `mode`, `key` and `version`: an older record
//! never overwrites newer state under a version guard), then commits. A
//! record that fails again is rolled back and its dead letter kept, with
//! the new reason and time. Replay applies a record *now*: it is not put
//! back in its place in the partition's order, which only the version
//! guard (or an append's key) can make harmless (docs/operations.md,
//! "Replaying dead letters").

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::Client;
use uuid::Uuid;

use super::dead_letters::{query, Selection};
use super::OpsError;
use crate::config::{quote_ident, Config};
use crate::offsets::PartitionKey;
use crate::record::{header_name_bytes, Record};
use crate::sink::attempt::Slice;
use crate::sink::error::ErrorClass;
use crate::sink::writer::TableWriter;
use crate::sink::{plan_writers, PlanError};

/// What happened to one dead letter.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Replayed {
    /// Written (rows: how many it inserted, updated or deleted; 0 when a
    /// newer version or the same key was already there).
    Written { rows: u64 },
    /// Failed again; the dead letter stays, with this reason.
    FailedAgain { reason: String },
    /// No route of the configuration has its name for its topic.
    Unrouted,
    /// Gone meanwhile (another replay took it).
    Gone,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub route: String,
    #[serde(flatten)]
    pub replayed: Replayed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub items: Vec<Item>,
}

impl Report {
    pub fn count(&self, what: fn(&Replayed) -> bool) -> usize {
        self.items.iter().filter(|i| what(&i.replayed)).count()
    }

    pub fn written(&self) -> usize {
        self.count(|r| matches!(r, Replayed::Written { .. }))
    }

    pub fn failed(&self) -> usize {
        self.count(|r| matches!(r, Replayed::FailedAgain { .. } | Replayed::Unrouted))
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            let what = match &item.replayed {
                Replayed::Written { rows } => format!("written ({rows} row(s) changed)"),
                Replayed::FailedAgain { reason } => format!("failed again: {reason}"),
                Replayed::Unrouted => "no such route for its topic; kept".into(),
                Replayed::Gone => "gone (replayed meanwhile)".into(),
            };
            out.push_str(&format!(
                "id {} {}[{}]@{} route {}: {what}\n",
                item.id, item.topic, item.partition, item.offset, item.route
            ));
        }
        let verb = if self.dry_run {
            "would be written (dry run: nothing changed)"
        } else {
            "written, their dead letters removed"
        };
        out.push_str(&format!(
            "{} of {} dead letter(s) {verb}; {} failed again or have no route and are kept\n",
            self.written(),
            self.items.len(),
            self.failed()
        ));
        out
    }
}

/// Replays the selected dead letters, in log order.
pub async fn replay(
    client: &mut Client,
    config: &Config,
    selection: &Selection,
    dry_run: bool,
) -> Result<Report, OpsError> {
    let txn = client.transaction().await?;
    let planned = plan_writers(config, &txn).await;
    txn.rollback().await?;
    let writers = match planned {
        Ok(w) => w,
        Err(PlanError::Postgres(e)) => return Err(e.into()),
        Err(PlanError::Problems(problems)) => {
            let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            return Err(OpsError::Plan(format!(
                "the routes cannot be written as configured:\n{}",
                lines.join("\n")
            )));
        }
    };
    let routes: HashMap<(&str, &str), &TableWriter> = writers
        .iter()
        .flat_map(|(topic, w)| {
            w.routes()
                .iter()
                .map(move |r| ((topic.as_str(), r.name.as_str()), r))
        })
        .collect();
    let ids = query(
        client,
        config,
        selection,
        "SELECT id FROM {table} WHERE {where} ORDER BY topic, partition, \"offset\", id",
    )
    .await?;
    let replayer = Replayer {
        config,
        routes,
        dry_run,
        table: format!(
            "{}.dead_letters",
            quote_ident(&config.postgres.state_schema)
        ),
        settings: crate::pg::transaction_settings(&config.postgres),
    };
    let mut items = Vec::with_capacity(ids.len());
    for row in ids {
        items.push(replayer.one(client, row.get(0)).await?);
    }
    Ok(Report { dry_run, items })
}

struct Replayer<'a> {
    config: &'a Config,
    routes: HashMap<(&'a str, &'a str), &'a TableWriter>,
    dry_run: bool,
    table: String,
    settings: String,
}

impl Replayer<'_> {
    async fn one(&self, client: &mut Client, id: i64) -> Result<Item, OpsError> {
        let txn = client.transaction().await?;
        txn.batch_execute(&self.settings).await?;
        let taken = txn
            .query_typed_opt(
                &format!(
                    "DELETE FROM {} WHERE id = $1 AND group_id = $2 RETURNING topic, partition, \
                     \"offset\", route, key, value, header_keys, header_values, \
                     round(extract(epoch FROM kafka_timestamp) * 1000)::bigint",
                    self.table
                ),
                &[(&id, Type::INT8), (&self.config.kafka.group_id, Type::TEXT)],
            )
            .await?;
        let Some(row) = taken else {
            txn.rollback().await?;
            return Ok(self.item(id, String::new(), 0, 0, String::new(), Replayed::Gone));
        };
        let (topic, partition, offset, route): (String, i32, i64, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let names: Vec<String> = row.get(6);
        let record = Record {
            offset,
            timestamp_ms: row.get(8),
            key: row.get::<_, Option<Vec<u8>>>(4).map(Into::into),
            value: row.get::<_, Option<Vec<u8>>>(5).map(Into::into),
            headers: names
                .iter()
                .map(|n| header_name_bytes(n).unwrap_or_else(|| n.as_bytes().to_vec()))
                .zip(row.get::<_, Vec<Option<Vec<u8>>>>(7))
                .collect(),
        };
        let item = |replayed| {
            self.item(
                id,
                topic.clone(),
                partition,
                offset,
                route.clone(),
                replayed,
            )
        };
        let Some(writer) = self.routes.get(&(topic.as_str(), route.as_str())) else {
            txn.rollback().await?;
            return Ok(item(Replayed::Unrouted));
        };
        let key = PartitionKey {
            group_id: self.config.kafka.group_id.clone(),
            topic: topic.clone(),
            partition,
        };
        let slice = Slice {
            key: &key,
            owner: Uuid::nil(),
            start: None,
            records: std::slice::from_ref(&record),
            refused: &[],
        };
        if let Some((_, reason)) = writer.first_undecodable(&slice) {
            txn.rollback().await?;
            self.failed_again(client, id, &reason, None).await?;
            return Ok(item(Replayed::FailedAgain { reason }));
        }
        // Not a batch: no phase metrics (this process exports none).
        let mut clock = crate::metrics::PhaseClock::unobserved();
        match writer.write_rows(&txn, &slice, None, &mut clock).await {
            Ok(stats) => {
                if self.dry_run {
                    txn.rollback().await?;
                } else {
                    txn.commit().await?;
                }
                Ok(item(Replayed::Written {
                    rows: stats.rows + stats.deleted,
                }))
            }
            // A row still without a partition failed again: keep it, as
            // the sink would hold it (sink::error::classify).
            Err(e) if e.class() == ErrorClass::DeadLetter || e.missing_partition() => {
                let _ = txn.rollback().await;
                let reason = e.to_string();
                self.failed_again(client, id, &reason, e.sqlstate()).await?;
                Ok(item(Replayed::FailedAgain { reason }))
            }
            Err(e) => {
                let _ = txn.rollback().await;
                Err(e.into())
            }
        }
    }

    /// Keeps the dead letter, with the reason it failed for now.
    async fn failed_again(
        &self,
        client: &Client,
        id: i64,
        reason: &str,
        sqlstate: Option<&str>,
    ) -> Result<(), OpsError> {
        if self.dry_run {
            return Ok(());
        }
        client
            .execute_typed(
                &format!(
                    "UPDATE {} SET error = $2, sqlstate = $3, failed_at = now() WHERE id = $1",
                    self.table
                ),
                &[
                    (&id, Type::INT8),
                    (&reason.replace('\0', "\u{fffd}"), Type::TEXT),
                    (&sqlstate, Type::TEXT),
                ],
            )
            .await?;
        Ok(())
    }

    fn item(
        &self,
        id: i64,
        topic: String,
        partition: i32,
        offset: i64,
        route: String,
        replayed: Replayed,
    ) -> Item {
        Item {
            id,
            topic,
            partition,
            offset,
            route,
            replayed,
        }
    }
}
