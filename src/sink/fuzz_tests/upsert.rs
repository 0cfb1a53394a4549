//! The upsert route shape: records whose keys are equal in Postgres but
//! spelled differently (5 and 5.0, -0 and 0, NaN, trailing spaces, jsonb
//! key order, time zones), decoded and collapsed as the writer does. The
//! collapsed batch (deletes, then at most one upsert per key under the
//! version guard) must leave any stored table exactly as applying every
//! record alone in offset order would, and never upsert one key twice in
//! a statement (Postgres' 21000, which would stop the partition).

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::config;
use super::plans::planned;
use crate::config::Format;
use crate::record::Record;
use crate::sink::cell::Cell;
use crate::sink::collapse::{collapse, KeyEq, Op};
use crate::sink::decode::{Decoded, RowDecoder};

/// JSON values that Postgres finds equal in some key type while their
/// text or encoding differs.
const KEY_VALUES: &[&str] = &[
    "5",
    "5.0",
    "50e-1",
    "0",
    "-0",
    "0.0",
    "1",
    "true",
    "null",
    "1e400",
    "\"5\"",
    "\"5.00\"",
    "\"a\"",
    "\"a \"",
    "\"a  \"",
    "\"A\"",
    "\"t\"",
    "\"NaN\"",
    "\"nan\"",
    "\"-0\"",
    "\"0\"",
    "\"2026-01-02T03:04:05Z\"",
    "\"2026-01-02T05:04:05+02:00\"",
    "\"2026-01-02\"",
    "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"",
    "\"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11\"",
    "{\"x\":1,\"y\":[2]}",
    "{\"y\":[2.0],\"x\":1,\"x\":1}",
    "[]",
];

/// Key column types: (oid, typmod).
const KEY_TYPES: &[(u32, i32)] = &[
    (20, -1),
    (23, -1),
    (21, -1),
    (25, -1),
    (1043, 7),
    (1042, 7),
    (1700, -1),
    (1700, (10 << 16 | 2) + 4),
    (1700, (3 << 16) + 4),
    (701, -1),
    (700, -1),
    (3802, -1),
    (2950, -1),
    (1184, -1),
    (1082, -1),
    (16, -1),
];

/// Version column types.
const VERSION_TYPES: &[(u32, i32)] = &[(20, -1), (23, -1), (21, -1), (1184, -1)];

/// A row in the model table: its cells as sent, and its version.
type Row = (Vec<u8>, Option<i64>);

fn encoded(cells: &[Cell]) -> Vec<u8> {
    let mut buf = bytes::BytesMut::new();
    for cell in cells {
        cell.write_copy_field(&mut buf);
    }
    buf.to_vec()
}

/// Key cells as Postgres compares them (as `collapse` does).
fn identity(cells: &[&Cell], eq: &[KeyEq]) -> Vec<u8> {
    let canonical: Vec<Cell> = cells
        .iter()
        .zip(eq)
        .map(|(c, e)| e.canonical(c).into_owned())
        .collect();
    encoded(&canonical)
}

fn version_of(cell: Option<&Cell>) -> Option<i64> {
    match cell? {
        Cell::I16(v) => Some(i64::from(*v)),
        Cell::I32(v) => Some(i64::from(*v)),
        Cell::I64(v) => Some(*v),
        _ => None,
    }
}

/// The table after one upsert statement's row: insert, or update the
/// non-key columns where the guard `t.v IS NULL OR t.v < EXCLUDED.v` holds.
struct Table<'a> {
    rows: HashMap<Vec<u8>, Row>,
    key: &'a [usize],
    eq: &'a [KeyEq],
    version: Option<usize>,
}

impl Table<'_> {
    fn upsert(&mut self, row: &[Cell]) {
        let id = identity(
            &self.key.iter().map(|&i| &row[i]).collect::<Vec<_>>(),
            self.eq,
        );
        let incoming = self.version.and_then(|v| version_of(row.get(v)));
        match self.rows.get_mut(&id) {
            None => {
                self.rows.insert(id, (encoded(row), incoming));
            }
            Some((held, held_version)) => {
                let guard = self.version.is_none()
                    || held_version.is_none()
                    || incoming.is_some_and(|v| Some(v) > *held_version);
                if guard {
                    // ON CONFLICT DO UPDATE never sets the key columns.
                    *held = updated(held, row, self.key);
                    *held_version = incoming;
                }
            }
        }
    }

    fn delete(&mut self, key_cells: &[Cell]) {
        self.rows
            .remove(&identity(&key_cells.iter().collect::<Vec<_>>(), self.eq));
    }
}

/// `row` encoded, with the key fields of the `held` encoding.
fn updated(held: &[u8], row: &[Cell], key: &[usize]) -> Vec<u8> {
    let fields = |bytes: &[u8]| {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 4 <= bytes.len() {
            let len = i32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            let end = at + 4 + usize::try_from(len).unwrap_or(0);
            out.push(bytes[at..end].to_vec());
            at = end;
        }
        out
    };
    let held = fields(held);
    let mut new = fields(&encoded(row));
    for &k in key {
        new[k] = held[k].clone();
    }
    new.concat()
}

/// A record key `{"id": X, "a": {"b": Y}}` or a value `{"n": version, ...}`.
fn doc() -> impl Strategy<Value = String> {
    (
        select(KEY_VALUES),
        select(KEY_VALUES),
        prop_oneof![
            Just("null".to_owned()),
            (-3i64..4).prop_map(|v| v.to_string())
        ],
    )
        .prop_map(|(x, y, n)| format!(r#"{{"id":{x},"a":{{"b":{y}}},"n":{n},"s":{y}}}"#))
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    let value =
        prop_oneof![4 => doc().prop_map(Some), 1 => Just(None), 1 => Just(Some("{".to_owned()))];
    vec((doc(), value), 1..40).prop_map(|docs| {
        docs.into_iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                offset: i as i64,
                timestamp_ms: Some(i as i64),
                key: Some(key.into_bytes().into()),
                value: value.map(|v| v.into_bytes().into()),
                headers: Vec::new(),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(config(100_000))]

    #[test]
    fn collapsed_upserts_equal_applying_each_record_in_order(
        key_types in vec(select(KEY_TYPES), 1..3),
        version in proptest::option::of(select(VERSION_TYPES)),
        payload in select(KEY_TYPES),
        deletes in any::<bool>(),
        records in records(),
        stored_versions in vec(proptest::option::of(-3i64..4), 0..8),
    ) {
        let sources = ["$key/id", "$key/a/b"];
        let mut columns: Vec<_> = key_types.iter().enumerate()
            .map(|(i, &ty)| planned(format!("k{i}"), ty, false, sources[i]))
            .collect();
        let key: Vec<usize> = (0..columns.len()).collect();
        columns.push(planned("payload".into(), payload, false, "/s"));
        let version_index = version.map(|ty| {
            columns.push(planned("v".into(), ty, false, "/n"));
            columns.len() - 1
        });
        let eq: Vec<KeyEq> = key.iter().map(|&i| KeyEq::for_column(&columns[i].spec, &columns[i].pg_type)).collect();
        let decoder = RowDecoder::new(Format::Json, columns);

        // The writer's decoding: a row or a delete per record, or nothing
        // (a dead letter, a NULL key, a tombstone that deletes nothing).
        let mut ops = Vec::new();
        for record in &records {
            let mut cells = Vec::new();
            let op = match decoder.decode("t", 0, record, &mut cells) {
                Ok(Decoded::Row) => Some(Op::Upsert(cells.clone())),
                Ok(Decoded::Tombstone) if deletes => decoder
                    .decode_key("t", 0, record, &key, &mut cells)
                    .ok()
                    .map(|()| Op::Delete(cells.clone())),
                _ => None,
            };
            let null_key = match &op {
                Some(Op::Upsert(row)) => key.iter().any(|&k| row[k] == Cell::Null),
                Some(Op::Delete(cells)) => cells.contains(&Cell::Null),
                None => false,
            };
            if let (Some(op), false) = (op, null_key) {
                ops.push(op);
            }
        }

        // A stored table holding some of the batch's keys already.
        let mut stored = Table { rows: HashMap::new(), key: &key, eq: &eq, version: version_index };
        for (op, held_version) in ops.iter().zip(&stored_versions) {
            if let Op::Upsert(row) = op {
                stored.upsert(row);
                let id = identity(&key.iter().map(|&i| &row[i]).collect::<Vec<_>>(), &eq);
                if let Some(held) = stored.rows.get_mut(&id) {
                    held.1 = *held_version;
                }
            }
        }
        let mut one_by_one = Table { rows: stored.rows.clone(), ..stored };
        for op in &ops {
            match op {
                Op::Upsert(row) => one_by_one.upsert(row),
                Op::Delete(cells) => one_by_one.delete(cells),
            }
        }

        let collapsed = collapse(ops, &key, &eq, version_index);
        let mut seen = std::collections::HashSet::new();
        for row in &collapsed.upserts {
            let id = identity(&key.iter().map(|&i| &row[i]).collect::<Vec<_>>(), &eq);
            prop_assert!(seen.insert(id), "one key upserted twice in a statement: {:?}", collapsed.upserts);
        }
        let mut batched = Table { rows: stored.rows, key: &key, eq: &eq, version: version_index };
        for cells in &collapsed.deletes {
            batched.delete(cells);
        }
        for row in &collapsed.upserts {
            batched.upsert(row);
        }
        prop_assert_eq!(batched.rows, one_by_one.rows);
    }
}
