//! Collapses one batch's upserts and deletes to one operation per key, with
//! the same result as applying every record in offset order.
//!
//! For each key the records are replayed against a model of the row:
//! a delete empties it; an upsert replaces it — unless the route has a
//! version column and the row already holds a version at least as new, in
//! which case the record is stale and skipped. What is left per key is at
//! most one delete followed by at most one upsert (a delete is kept before an
//! upsert when the key was deleted earlier in the batch, so columns the route
//! does not map return to their defaults, as a delete and re-insert would).
//! The first upsert of a key is checked against the stored row by the
//! upsert statement's `WHERE` (the version guard).

use std::collections::HashMap;

use bytes::BytesMut;

use super::cell::Cell;

/// One record's effect, in offset order.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A full row (all mapped columns).
    Upsert(Vec<Cell>),
    /// A delete: the key cells, in key order.
    Delete(Vec<Cell>),
}

/// What to write for the batch.
#[derive(Debug, Default, PartialEq)]
pub struct Collapsed {
    /// Keys to delete (in key order), executed first.
    pub deletes: Vec<Vec<Cell>>,
    /// Rows to upsert, one per key, executed after the deletes.
    pub upserts: Vec<Vec<Cell>>,
    /// Records skipped because the key held a newer version in the batch.
    pub stale: u64,
}

enum Row {
    /// Only the stored row (unknown here) so far.
    Stored,
    /// Deleted; holds the key cells to delete by.
    Deleted(Vec<Cell>),
    Upserted {
        row: Vec<Cell>,
        version: Option<i64>,
    },
}

struct KeyState {
    row: Row,
    /// A delete happened in the batch before the current upsert.
    deleted_before: bool,
}

/// `key`: indexes of the key columns in a row; `version`: index of the
/// version column.
pub fn collapse(ops: Vec<Op>, key: &[usize], version: Option<usize>) -> Collapsed {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut states: HashMap<Vec<u8>, KeyState> = HashMap::new();
    let mut stale = 0;
    for op in ops {
        let id = match &op {
            Op::Upsert(row) => identity(key.iter().map(|&i| &row[i])),
            Op::Delete(cells) => identity(cells.iter()),
        };
        let state = states.entry(id).or_insert_with_key(|id| {
            order.push(id.clone());
            KeyState {
                row: Row::Stored,
                deleted_before: false,
            }
        });
        match op {
            Op::Delete(cells) => {
                state.row = Row::Deleted(cells);
                state.deleted_before = true;
            }
            Op::Upsert(row) => {
                let incoming = version.and_then(|v| version_of(&row[v]));
                let newer = match &state.row {
                    Row::Upserted { version: held, .. } if version.is_some() => incoming > *held,
                    _ => true,
                };
                if newer {
                    state.row = Row::Upserted {
                        row,
                        version: incoming,
                    };
                } else {
                    stale += 1;
                }
            }
        }
    }
    let mut out = Collapsed {
        stale,
        ..Collapsed::default()
    };
    for id in order {
        let Some(state) = states.remove(&id) else {
            continue;
        };
        match state.row {
            Row::Stored => {}
            Row::Deleted(cells) => out.deletes.push(cells),
            Row::Upserted { row, .. } => {
                if state.deleted_before {
                    out.deletes
                        .push(key.iter().map(|&i| row[i].clone()).collect());
                }
                out.upserts.push(row);
            }
        }
    }
    out
}

/// Integer and timestamp versions compare as i64; NULL is older than any.
fn version_of(cell: &Cell) -> Option<i64> {
    match cell {
        Cell::I16(v) => Some(i64::from(*v)),
        Cell::I32(v) => Some(i64::from(*v)),
        Cell::I64(v) => Some(*v),
        _ => None,
    }
}

/// Key cells as bytes: equal keys give equal bytes (the binary wire form).
fn identity<'a>(cells: impl Iterator<Item = &'a Cell>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for cell in cells {
        cell.write_copy_field(&mut buf);
    }
    buf.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(k: i64, v: i64, payload: &str) -> Op {
        Op::Upsert(vec![
            Cell::I64(k),
            Cell::I64(v),
            Cell::Bytes(payload.as_bytes().to_vec()),
        ])
    }
    fn del(k: i64) -> Op {
        Op::Delete(vec![Cell::I64(k)])
    }
    fn payloads(c: &Collapsed) -> Vec<String> {
        c.upserts
            .iter()
            .map(|r| match &r[2] {
                Cell::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn last_record_per_key_wins_without_a_version() {
        let c = collapse(
            vec![up(1, 0, "a"), up(2, 0, "b"), up(1, 0, "c")],
            &[0],
            None,
        );
        assert_eq!(payloads(&c), ["c", "b"]);
        assert!(c.deletes.is_empty());
        assert_eq!(c.stale, 0);
    }

    #[test]
    fn versions_guard_against_older_records_in_the_batch() {
        let c = collapse(
            vec![up(1, 1, "v1"), up(1, 3, "v3"), up(1, 2, "v2")],
            &[0],
            Some(1),
        );
        assert_eq!(payloads(&c), ["v3"]);
        assert_eq!(c.stale, 1);
        // Equal versions: the first one stands.
        let c = collapse(vec![up(1, 5, "first"), up(1, 5, "second")], &[0], Some(1));
        assert_eq!(payloads(&c), ["first"]);
        assert_eq!(c.stale, 1);
    }

    #[test]
    fn deletes_and_reinserts_keep_their_order() {
        // upsert then delete: only the delete.
        let c = collapse(vec![up(1, 0, "a"), del(1)], &[0], None);
        assert!(c.upserts.is_empty());
        assert_eq!(c.deletes.len(), 1);
        // delete then re-insert: delete first, then the row.
        let c = collapse(vec![up(1, 0, "a"), del(1), up(1, 0, "b")], &[0], None);
        assert_eq!(c.deletes.len(), 1);
        assert_eq!(payloads(&c), ["b"]);
        // After a delete, an older version re-inserts (the row is gone).
        let c = collapse(
            vec![up(1, 9, "new"), del(1), up(1, 2, "old")],
            &[0],
            Some(1),
        );
        assert_eq!(payloads(&c), ["old"]);
        assert_eq!(c.stale, 0);
    }
}
