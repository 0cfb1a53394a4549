//! The route shapes sluice supports, as proptest strategies: column plans
//! of every writable type, reading the record the ways routes can.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tokio_postgres::types::Type;

use crate::config::Format;
use crate::sink::catalog::PlannedColumn;
use crate::sink::coerce::ColumnSpec;

/// Column sources that point into the value (built from `KEYS`), and some
/// that find nothing.
const VALUE_SOURCES: &[&str] = &[
    "/a", "/b", "/id", "/n", "/s", "/a/b", "/a/0", "/b/1/a", "/é", "/k~0x", "/x~1y", "/", "//",
    "/0", "/a/-", "/missing",
];

/// Column sources from the Kafka record itself.
const KAFKA_SOURCES: &[&str] = &[
    "$topic",
    "$partition",
    "$offset",
    "$key",
    "$value",
    "$timestamp",
    "$key/id",
    "$key/a/b",
    "$key/",
    "$headers.trace",
    "$headers.Trace",
    "$headers.é",
    "$headers.a b",
    "$headers.\\xff",
];

/// A `pg_type` oid and typmod of every type sluice writes, with the
/// typmods that change coercion, and junk typmods.
pub fn column_type() -> impl Strategy<Value = (u32, i32)> {
    prop_oneof![
        6 => select(&[21u32, 23, 20, 700, 701, 16, 25, 114, 3802, 1184, 1114, 1082, 2950, 17, 19, 1043, 1700][..])
            .prop_map(|oid| (oid, -1)),
        1 => (1i32..24).prop_map(|n| (1043, n + 4)),
        1 => (1i32..8).prop_map(|n| (1042, n + 4)),
        2 => (1i32..40, 0i32..45).prop_map(|(p, s)| (1700, ((p << 16) | s) + 4)),
        1 => (select(&[1700u32, 1043, 1042][..]), any::<i32>()),
    ]
}

/// One planned column; `name` and `source` as a route writes them.
pub fn planned(
    name: String,
    (oid, typmod): (u32, i32),
    not_null: bool,
    source: &str,
) -> PlannedColumn {
    PlannedColumn {
        name,
        source: source.parse().expect("a source from the lists above"),
        spec: ColumnSpec::from_catalog(oid, typmod, not_null).expect("a writable type"),
        pg_type: Type::from_oid(oid).expect("a built-in type"),
    }
}

/// How a route's columns read the record.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// JSON pointers into the value (walked once for them), and Kafka
    /// fields.
    Pointers,
    /// The whole value (only validated, never parsed into a tree) and
    /// Kafka fields.
    WholeValue,
    /// `format: raw`: Kafka fields only, no JSON to point into.
    Raw,
}

/// A route's format and column plan: 1 to 10 columns of any writable type,
/// from any source its shape allows.
pub fn plan() -> impl Strategy<Value = (Format, Vec<PlannedColumn>)> {
    let column = (
        column_type(),
        prop::bool::weighted(0.15),
        prop_oneof![2 => select(VALUE_SOURCES), 1 => select(KAFKA_SOURCES)],
        prop_oneof![1 => Just("/"), 1 => select(KAFKA_SOURCES)],
        select(KAFKA_SOURCES),
    );
    let shape = prop_oneof![
        3 => Just(Shape::Pointers),
        2 => Just(Shape::WholeValue),
        1 => Just(Shape::Raw),
    ];
    (shape, vec(column, 1..10)).prop_map(|(shape, columns)| {
        let format = match shape {
            Shape::Raw => Format::Raw,
            _ => Format::Json,
        };
        let columns = columns
            .into_iter()
            .enumerate()
            .map(|(i, (ty, not_null, pointer, whole, kafka))| {
                let source = match shape {
                    Shape::Pointers => pointer,
                    Shape::WholeValue => whole,
                    Shape::Raw => kafka,
                };
                planned(format!("c{i}"), ty, not_null, source)
            })
            .collect();
        (format, columns)
    })
}
