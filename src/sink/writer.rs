//! Writes one route's share of a slice of a partition's records, inside the
//! transaction `sink::topic` opened and fenced: the rows (appended, or
//! upserted and deleted), then the dead letters.

use tokio_postgres::Transaction;

use super::attempt::{DeadLetterKind, Refused, Slice, WriteStats};
use super::catalog::PlannedColumn;
use super::cell::Cell;
use super::collapse::{collapse, KeyEq, Op};
use super::dead_letters;
use super::decode::{Decoded, RowDecoder};
use super::error::SinkError;
use super::rows::{RowSql, RowWriter, Shape};
use crate::config::{quote_ident, Mode, OnError, PostgresConfig, TableName, WriteMethod};
use crate::metrics::{Phase, PhaseClock};
use crate::record::Record;

/// What one record turns into.
enum Item {
    /// A row; its cells are in the buffer.
    Row,
    /// A delete by key; the key cells are in the buffer.
    Delete,
    /// A tombstone that deletes nothing.
    Skip,
}

/// Upsert settings: positions of the key and version columns in a row.
#[derive(Debug)]
struct Upsert {
    key: Vec<usize>,
    /// How each key column compares in Postgres, in key order.
    key_eq: Vec<KeyEq>,
    version: Option<usize>,
    /// Set when tombstones delete.
    deletes: Option<RowSql>,
}

/// Everything needed to write one route's table.
#[derive(Debug)]
pub struct TableWriter {
    pub table: TableName,
    /// The route's name (`RouteConfig::route_name`).
    pub name: String,
    decoder: RowDecoder,
    on_error: OnError,
    rows: RowSql,
    upsert: Option<Upsert>,
    dead_letter_sql: String,
}

/// A route's write settings, as the writer needs them.
pub struct Route<'a> {
    pub name: String,
    pub method: WriteMethod,
    pub mode: Mode,
    pub key: Option<&'a [String]>,
    pub version: Option<&'a str>,
    pub delete_on_tombstone: bool,
    pub on_error: OnError,
}

impl TableWriter {
    pub fn new(
        table: TableName,
        decoder: RowDecoder,
        route: Route<'_>,
        pg: &PostgresConfig,
        max_rows: usize,
    ) -> TableWriter {
        let columns = decoder.columns();
        let target = table.quoted();
        let list = |cols: &[&PlannedColumn]| {
            cols.iter()
                .map(|c| quote_ident(&c.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all: Vec<&PlannedColumn> = columns.iter().collect();
        let cols = list(&all);
        let position = |name: &str| columns.iter().position(|c| c.name == name);
        let key: Vec<usize> = route
            .key
            .unwrap_or_default()
            .iter()
            .filter_map(|k| position(k))
            .collect();
        let key_cols: Vec<&PlannedColumn> = key.iter().map(|&i| &columns[i]).collect();
        let key_list = list(&key_cols);

        let tail = match route.mode {
            Mode::Append if key.is_empty() => String::new(),
            Mode::Append => " ON CONFLICT DO NOTHING".to_string(),
            Mode::Upsert => {
                let set: Vec<String> = columns
                    .iter()
                    .filter(|c| !key_cols.iter().any(|k| k.name == c.name))
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote_ident(&c.name)))
                    .collect();
                let guard = route.version.map_or(String::new(), |v| {
                    let v = quote_ident(v);
                    format!(" WHERE t.{v} IS NULL OR t.{v} < EXCLUDED.{v}")
                });
                if set.is_empty() {
                    format!(" ON CONFLICT ({key_list}) DO NOTHING")
                } else {
                    format!(
                        " ON CONFLICT ({key_list}) DO UPDATE SET {}{guard}",
                        set.join(", ")
                    )
                }
            }
        };
        let staged = !tail.is_empty();
        let rows = RowSql::new(
            route.method,
            Shape {
                target: &target,
                cols: &cols,
                types: columns.iter().map(|c| c.pg_type.clone()).collect(),
                apply_stage: staged.then(|| {
                    format!("INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {{stage}}{tail}")
                }),
                head: format!("INSERT INTO {target} AS t ({cols}) VALUES "),
                tail: tail.clone(),
                stage_purpose: "stage",
            },
            max_rows,
        );
        let upsert = (route.mode == Mode::Upsert).then(|| Upsert {
            version: route.version.and_then(position),
            deletes: route.delete_on_tombstone.then(|| {
                let matches: Vec<String> = key_cols
                    .iter()
                    .map(|c| format!("t.{0} = d.{0}", quote_ident(&c.name)))
                    .collect();
                RowSql::new(
                    route.method,
                    Shape {
                        target: &target,
                        cols: &key_list,
                        types: key_cols.iter().map(|c| c.pg_type.clone()).collect(),
                        apply_stage: Some(format!(
                            "DELETE FROM {target} t USING {{stage}} d WHERE {}",
                            matches.join(" AND ")
                        )),
                        head: format!("DELETE FROM {target} WHERE ({key_list}) IN ("),
                        tail: ")".to_string(),
                        stage_purpose: "del",
                    },
                    max_rows,
                )
            }),
            key_eq: key_cols
                .iter()
                .map(|c| KeyEq::for_column(&c.spec, &c.pg_type))
                .collect(),
            key: key.clone(),
        });
        TableWriter {
            dead_letter_sql: dead_letters::insert_sql(&pg.state_schema),
            table,
            name: route.name,
            decoder,
            on_error: route.on_error,
            rows,
            upsert,
        }
    }

    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// The `mode` metrics label.
    pub fn mode_label(&self) -> &'static str {
        if self.upsert.is_some() {
            "upsert"
        } else {
            "append"
        }
    }

    /// With `on_error: stop`, the first record of `slice` that cannot be
    /// decoded (its index and why): halting must happen before the record,
    /// so it is found before anything is written.
    pub fn first_rejected(&self, slice: &Slice<'_>) -> Option<(usize, String)> {
        if self.on_error != OnError::Stop {
            return None;
        }
        self.first_undecodable(slice)
    }

    /// The first record of `slice` this route cannot decode, and why.
    pub fn first_undecodable(&self, slice: &Slice<'_>) -> Option<(usize, String)> {
        let mut cells = Vec::with_capacity(self.decoder.columns().len());
        slice
            .records
            .iter()
            .enumerate()
            .find_map(|(index, record)| {
                self.decode(slice, record, &mut cells)
                    .err()
                    .map(|reason| (index, reason))
            })
    }

    /// This route's statements for `slice` in `txn`, after the fence: the
    /// rows (appended, or upserted and deleted), then the dead letters.
    /// With `refused`, the slice's (single) record is dead-lettered for
    /// this route instead of written. `clock` times the rows and the dead
    /// letters (the latter only when there are any).
    pub async fn write_rows(
        &self,
        txn: &Transaction<'_>,
        slice: &Slice<'_>,
        refused: Option<&Refused>,
        clock: &mut PhaseClock<'_>,
    ) -> Result<WriteStats, SinkError> {
        clock.start(Phase::Rows);
        let mut cells = Vec::with_capacity(self.decoder.columns().len());
        let mut stats = WriteStats::default();
        let mut dead: Vec<(&Record, Refused, DeadLetterKind)> = Vec::new();
        let mut ops = Vec::new();
        let mut rows = match (&self.upsert, refused) {
            // Appends stream straight into the table.
            (None, None) => Some(RowWriter::open(&self.rows, txn).await?),
            _ => None,
        };
        for record in slice.records {
            if let Some(refused) = refused {
                dead.push((record, refused.clone(), DeadLetterKind::Refused));
                continue;
            }
            if let Some(buf) = rows.as_mut().map(RowWriter::row_buffer) {
                // An append: the row is encoded straight into the COPY
                // buffer, or the buffer a VALUES list binds its parameters
                // from, with no cells in between.
                let (topic, partition) = (&slice.key.topic, slice.key.partition);
                match self.decoder.decode_copy(topic, partition, record, buf) {
                    Ok(Decoded::Row) => {
                        if let Some(rows) = &mut rows {
                            rows.row_written().await?;
                        }
                    }
                    Ok(Decoded::Tombstone) => stats.tombstones += 1,
                    Err(reason) => {
                        dead.push((record, Refused::decode(reason), DeadLetterKind::Decode))
                    }
                }
                continue;
            }
            match self.decode(slice, record, &mut cells) {
                // Appends took the branch above: these are upserts.
                Ok(Item::Row) => ops.push(Op::Upsert(std::mem::take(&mut cells))),
                Ok(Item::Delete) => ops.push(Op::Delete(std::mem::take(&mut cells))),
                Ok(Item::Skip) => stats.tombstones += 1,
                Err(reason) => dead.push((record, Refused::decode(reason), DeadLetterKind::Decode)),
            }
        }
        if let Some(rows) = rows {
            let (pushed, affected) = rows.finish().await?;
            stats.rows = affected;
            stats.conflicts = pushed.saturating_sub(affected);
        }
        if let (Some(upsert), None) = (&self.upsert, refused) {
            self.upsert(txn, upsert, ops, &mut stats).await?;
        }
        if !dead.is_empty() {
            clock.start(Phase::DeadLetters);
        }
        dead_letters::write(
            txn,
            &self.dead_letter_sql,
            &self.table,
            &self.name,
            slice,
            &dead,
        )
        .await?;
        stats.dead_letters = dead.iter().map(|(_, _, kind)| *kind).collect();
        Ok(stats)
    }

    /// Collapses the batch per key, then deletes, then upserts.
    async fn upsert(
        &self,
        txn: &Transaction<'_>,
        upsert: &Upsert,
        ops: Vec<Op>,
        stats: &mut WriteStats,
    ) -> Result<(), SinkError> {
        let records = ops.len() as u64;
        let collapsed = collapse(ops, &upsert.key, &upsert.key_eq, upsert.version);
        stats.stale = collapsed.stale;
        // Every record is accounted for once: each statement pushed stands
        // for one record of its key, the records it superseded are
        // "collapsed", a delete that found no row is a skipped tombstone.
        let mut statements = 0;
        if let (Some(sql), false) = (&upsert.deletes, collapsed.deletes.is_empty()) {
            let mut deletes = RowWriter::open(sql, txn).await?;
            for mut key in collapsed.deletes {
                deletes.push(&mut key).await?;
            }
            let (pushed, affected) = deletes.finish().await?;
            stats.deleted = affected;
            stats.tombstones += pushed.saturating_sub(affected);
            statements += pushed;
        }
        if !collapsed.upserts.is_empty() {
            let mut rows = RowWriter::open(&self.rows, txn).await?;
            for mut row in collapsed.upserts {
                rows.push(&mut row).await?;
            }
            let (pushed, affected) = rows.finish().await?;
            stats.rows = affected;
            stats.stale += pushed.saturating_sub(affected);
            statements += pushed;
        }
        stats.collapsed = records.saturating_sub(collapsed.stale + statements);
        Ok(())
    }

    /// Decodes one record into `cells`.
    fn decode(
        &self,
        slice: &Slice<'_>,
        record: &Record,
        cells: &mut Vec<Cell>,
    ) -> Result<Item, String> {
        let (topic, partition) = (&slice.key.topic, slice.key.partition);
        let item = match self.decoder.decode(topic, partition, record, cells)? {
            Decoded::Row => Item::Row,
            Decoded::Tombstone => match &self.upsert {
                Some(Upsert {
                    key,
                    deletes: Some(_),
                    ..
                }) => {
                    self.decoder
                        .decode_key(topic, partition, record, key, cells)?;
                    Item::Delete
                }
                _ => Item::Skip,
            },
        };
        if let Some(upsert) = &self.upsert {
            // A row whose key is NULL matches no row: it cannot be upserted.
            let null_key = match item {
                Item::Row => upsert.key.iter().copied().find(|&k| cells[k] == Cell::Null),
                Item::Delete => upsert
                    .key
                    .iter()
                    .zip(cells.iter())
                    .find(|(_, c)| **c == Cell::Null)
                    .map(|(&k, _)| k),
                Item::Skip => None,
            };
            if let Some(k) = null_key {
                return Err(format!(
                    "key column {} is null",
                    self.decoder.columns()[k].name
                ));
            }
        }
        Ok(item)
    }
}
