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
//!
//! The collapse and that guard apply one rule, so batch boundaries cannot
//! change the result: a record replaces a row whose version is NULL, or
//! whose version is lower than the record's; a record with a NULL version
//! replaces only a row whose version is NULL (of two NULL versions the later
//! wins). Keys are the same key when Postgres finds them equal ([`KeyEq`]),
//! not when their encodings are, and a row that replaces another keeps the
//! key cells it replaces, as `ON CONFLICT DO UPDATE` (which never sets the
//! key) would.

use std::collections::HashMap;

use bytes::BytesMut;

use super::cell::Cell;

mod key;
pub use key::KeyEq;

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

/// `key`: indexes of the key columns in a row, and `eq`: how each one
/// compares (both in key order); `version`: index of the version column.
pub fn collapse(ops: Vec<Op>, key: &[usize], eq: &[KeyEq], version: Option<usize>) -> Collapsed {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut states: HashMap<Vec<u8>, KeyState> = HashMap::new();
    let mut stale = 0;
    for op in ops {
        let id = match &op {
            Op::Upsert(row) => identity(key.iter().map(|&i| &row[i]), eq),
            Op::Delete(cells) => identity(cells.iter(), eq),
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
            Op::Upsert(mut row) => {
                let incoming = version.and_then(|v| version_of(&row[v]));
                let newer = match &state.row {
                    Row::Upserted { version: held, .. } if version.is_some() => {
                        replaces(incoming, *held)
                    }
                    _ => true,
                };
                if !newer {
                    stale += 1;
                    continue;
                }
                if let Row::Upserted { row: held, .. } = &mut state.row {
                    // An update of the row: it keeps the key as first written
                    // (5, not the 5.0 of a later record), as the SQL would.
                    for &i in key {
                        if let (Some(cell), Some(kept)) = (row.get_mut(i), held.get_mut(i)) {
                            std::mem::swap(cell, kept);
                        }
                    }
                }
                state.row = Row::Upserted {
                    row,
                    version: incoming,
                };
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

/// Whether a record with version `incoming` replaces a row holding `held`;
/// the upsert statement's guard (`t.v IS NULL OR t.v < EXCLUDED.v`) says the
/// same, so a row stored by an earlier batch is treated alike.
fn replaces(incoming: Option<i64>, held: Option<i64>) -> bool {
    match (held, incoming) {
        (None, _) => true,
        (Some(held), Some(incoming)) => incoming > held,
        (Some(_), None) => false,
    }
}

/// Integer and timestamp versions compare as i64; `None` for NULL.
fn version_of(cell: &Cell) -> Option<i64> {
    match cell {
        Cell::I16(v) => Some(i64::from(*v)),
        Cell::I32(v) => Some(i64::from(*v)),
        Cell::I64(v) => Some(*v),
        _ => None,
    }
}

/// Key cells as bytes: keys Postgres finds equal give equal bytes (each
/// cell's canonical form as a length-prefixed COPY field, so cells cannot run
/// together).
fn identity<'a>(cells: impl Iterator<Item = &'a Cell>, eq: &[KeyEq]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for (i, cell) in cells.enumerate() {
        let eq = eq.get(i).copied().unwrap_or(KeyEq::Bytes);
        eq.canonical(cell).write_copy_field(&mut buf);
    }
    buf.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::numeric::encode_numeric;

    const BY_BYTES: &[KeyEq] = &[KeyEq::Bytes];

    fn up(k: i64, v: i64, payload: &str) -> Op {
        up_v(k, Cell::I64(v), payload)
    }
    fn up_v(k: i64, v: Cell, payload: &str) -> Op {
        Op::Upsert(vec![
            Cell::I64(k),
            v,
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
            BY_BYTES,
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
            BY_BYTES,
            Some(1),
        );
        assert_eq!(payloads(&c), ["v3"]);
        assert_eq!(c.stale, 1);
        // Equal versions: the first one stands.
        let c = collapse(
            vec![up(1, 5, "first"), up(1, 5, "second")],
            &[0],
            BY_BYTES,
            Some(1),
        );
        assert_eq!(payloads(&c), ["first"]);
        assert_eq!(c.stale, 1);
    }

    /// Hardening #16: the rule of the SQL guard, `t.v IS NULL OR t.v < EXCLUDED.v`.
    #[test]
    fn null_versions_follow_the_sql_guard() {
        let run = |ops| collapse(ops, &[0], BY_BYTES, Some(1));
        // Of two NULL versions the later wins.
        let c = run(vec![up_v(1, Cell::Null, "a"), up_v(1, Cell::Null, "b")]);
        assert_eq!((payloads(&c), c.stale), (vec!["b".to_string()], 0));
        // Any version replaces a NULL one; a NULL one replaces no version.
        let c = run(vec![
            up_v(1, Cell::Null, "a"),
            up(1, 1, "b"),
            up_v(1, Cell::Null, "c"),
        ]);
        assert_eq!((payloads(&c), c.stale), (vec!["b".to_string()], 1));
        for (held, incoming, wins) in [
            (None, None, true),
            (None, Some(0), true),
            (Some(0), None, false),
            (Some(1), Some(1), false),
            (Some(1), Some(2), true),
        ] {
            assert_eq!(replaces(incoming, held), wins, "{incoming:?} over {held:?}");
        }
    }

    #[test]
    fn deletes_and_reinserts_keep_their_order() {
        // upsert then delete: only the delete.
        let c = collapse(vec![up(1, 0, "a"), del(1)], &[0], BY_BYTES, None);
        assert!(c.upserts.is_empty());
        assert_eq!(c.deletes.len(), 1);
        // delete then re-insert: delete first, then the row.
        let c = collapse(
            vec![up(1, 0, "a"), del(1), up(1, 0, "b")],
            &[0],
            BY_BYTES,
            None,
        );
        assert_eq!(c.deletes.len(), 1);
        assert_eq!(payloads(&c), ["b"]);
        // After a delete, an older version re-inserts (the row is gone).
        let c = collapse(
            vec![up(1, 9, "new"), del(1), up(1, 2, "old")],
            &[0],
            BY_BYTES,
            Some(1),
        );
        assert_eq!(payloads(&c), ["old"]);
        assert_eq!(c.stale, 0);
    }

    /// Hardening #15: keys merge by Postgres equality; the row keeps the key
    /// as first written, and a delete by an equal key orders with the rest.
    #[test]
    fn equal_keys_with_distinct_encodings_collapse() {
        let n = |t: &str| Cell::Bytes(encode_numeric(t).unwrap_or_default());
        let up = |k: &str, p: &str| Op::Upsert(vec![n(k), Cell::Bytes(p.into())]);
        let eq = &[KeyEq::Numeric { scale: None }];
        let c = collapse(
            vec![up("5", "a"), up("5.0", "b"), up("5.00", "c")],
            &[0],
            eq,
            None,
        );
        assert_eq!(c.upserts, [vec![n("5"), Cell::Bytes("c".into())]]);
        // An upsert, then a delete by 6.00: the delete wins.
        let c = collapse(
            vec![up("6", "a"), Op::Delete(vec![n("6.00")])],
            &[0],
            eq,
            None,
        );
        assert!(c.upserts.is_empty());
        assert_eq!(c.deletes, [vec![n("6.00")]]);
        // Composite keys compare column by column, each its own way.
        let row = |f: f64, s: &str| Op::Upsert(vec![Cell::F64(f), Cell::Bytes(s.into())]);
        let c = collapse(
            vec![row(0.0, "ab  "), row(-0.0, "ab")],
            &[0, 1],
            &[KeyEq::Float, KeyEq::Bpchar],
            None,
        );
        assert_eq!(
            c.upserts,
            [vec![Cell::F64(0.0), Cell::Bytes("ab  ".into())]]
        );
        // Without the per-type comparison they are distinct keys.
        let c = collapse(
            vec![row(0.0, "ab"), row(-0.0, "ab")],
            &[0, 1],
            &[KeyEq::Bytes, KeyEq::Bytes],
            None,
        );
        assert_eq!(c.upserts.len(), 2);
    }
}
