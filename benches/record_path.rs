//! The per-record path micro-benchmark: what the sink does for each record
//! of a batch once it holds it — decode the value (JSON or raw), take each
//! mapped column's source, coerce it to the column's type, and encode the
//! row as a binary COPY row — with no Kafka and no Postgres.
//!
//! Cases:
//! - `demo`: the `sluice demo` event into the demo's table and route (the
//!   drain benchmark's workload, benches/drain.rs);
//! - `wide`: a 30-column row of mixed types (bigint, integer, smallint,
//!   text, varchar, numeric, boolean, timestamptz, timestamp, date, jsonb,
//!   json, double, real, uuid), every column a JSON pointer;
//! - `raw`: a `format: raw` route (value and key as bytea, topic,
//!   partition, offset, timestamp).
//!
//! Each case decodes with the crate's own [`RowDecoder`], built by
//! [`plan_route`] from a route and a catalog description of the table (what
//! start-up reads from `pg_attribute`), through
//! [`RowDecoder::decode_copy`]: the path a COPY append takes in the sink,
//! each row written straight into the COPY buffer, which is handed to the
//! connection every [`COPY_FRAME`] bytes (here: emptied and reused).
//!
//! Before criterion runs, each case prints its allocations per record (a
//! counting global allocator) and its COPY bytes per record.
//!
//!   cargo bench --bench record_path            # criterion, ns and records/s
//!   cargo test --bench record_path -- --smoke  # each case 100 times, allocations
//!
//! `SLUICE_BENCH_QUICK=1` means `--smoke`. Figures: docs/performance.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use criterion::{Criterion, Throughput};

use sluice::config::{Format, RouteConfig, TableName};
use sluice::demo::{events, DemoArgs};
use sluice::record::Record;
use sluice::sink::catalog::{plan_route, CatalogColumn, CatalogTable};
use sluice::sink::decode::RowDecoder;
use sluice::sink::rows::COPY_FRAME;

/// Counts every allocation (and reallocation) the process makes, so each
/// case can say how many one record costs.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Distinct records per case, cycled, so the figures are not those of one
/// value the branch predictor has learnt.
const RECORDS: usize = 1024;

/// One benchmark case: a route's decoder and the records it reads.
struct Case {
    name: &'static str,
    topic: &'static str,
    decoder: RowDecoder,
    records: Vec<Record>,
}

/// The per-record state the sink keeps across a batch: the COPY buffer
/// (`sink::rows`).
struct Path {
    copy: BytesMut,
}

impl Case {
    fn path(&self) -> Path {
        Path {
            copy: BytesMut::with_capacity(2 * COPY_FRAME),
        }
    }

    /// The measured work for one record: decode, coerce and encode it as
    /// one binary COPY row. Returns the row's COPY bytes.
    fn one(&self, i: usize, path: &mut Path) -> usize {
        let record = &self.records[i % self.records.len()];
        let at = path.copy.len();
        self.decoder
            .decode_copy(self.topic, 3, record, &mut path.copy)
            .expect("every benchmark record decodes");
        let bytes = path.copy.len() - at;
        if path.copy.len() >= COPY_FRAME {
            path.copy.clear();
        }
        bytes
    }

    /// Allocations and COPY bytes per record, after a warm-up that lets the
    /// reused buffers reach their size.
    fn allocs_per_record(&self, n: usize) -> (f64, f64) {
        let mut path = self.path();
        for i in 0..self.records.len() {
            self.one(i, &mut path);
        }
        let before = ALLOCS.load(Ordering::Relaxed);
        let mut bytes = 0;
        for i in 0..n {
            bytes += black_box(self.one(i, &mut path));
        }
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        (allocs as f64 / n as f64, bytes as f64 / n as f64)
    }
}

/// A table column as the catalog describes it.
fn column(name: &str, type_oid: u32, typmod: i32, not_null: bool) -> CatalogColumn {
    CatalogColumn {
        name: name.into(),
        type_oid,
        typmod,
        not_null,
        has_default: false,
        type_name: String::new(),
    }
}

/// `numeric(p,s)`'s typmod, as pg_attribute stores it.
const fn numeric(p: i32, s: i32) -> i32 {
    ((p << 16) | s) + 4
}

/// The decoder start-up would build for `route` on `columns`.
fn decoder(route: &RouteConfig, columns: Vec<CatalogColumn>) -> RowDecoder {
    let table = TableName::parse(&route.table).expect("table name");
    let catalog = CatalogTable {
        columns,
        unique_keys: Vec::new(),
        unlogged: false,
    };
    let planned = plan_route(0, route, &table, &catalog).expect("the route fits the table");
    RowDecoder::new(route.format, planned)
}

fn record(offset: usize, key: Option<Vec<u8>>, value: Vec<u8>) -> Record {
    Record {
        offset: offset as i64,
        timestamp_ms: Some(1_795_000_000_000 + offset as i64),
        key: key.map(Into::into),
        value: Some(value.into()),
        headers: Vec::new(),
    }
}

/// The demo's event, table and route (src/demo.rs, src/demo/example.rs).
fn demo_case() -> Case {
    let yaml = sluice::demo::demo_config(
        "localhost:9092",
        "postgres://localhost/b",
        Default::default(),
    );
    let config = sluice::config::Config::from_yaml(&yaml, |_| None).expect("the demo config");
    // The demo table (sluice::demo::table_ddl).
    let columns = vec![
        column("order_id", 20, -1, true),
        column("customer", 25, -1, true),
        column("seq", 20, -1, true),
        column("amount", 1700, numeric(12, 2), false),
        column("created_at", 1184, -1, false),
        column("doc", 3802, -1, false),
        column("src_partition", 23, -1, true),
        column("src_offset", 20, -1, true),
    ];
    let args = DemoArgs {
        postgres_url: None,
        records: RECORDS + RECORDS / 999 + 1,
        partitions: 1,
        keys: 250,
        write_example: None,
        mode: Default::default(),
    };
    let records = events(&args)
        .into_iter()
        .enumerate()
        // The demo's malformed events are dead letters, not the record path.
        .filter(|(_, (_, _, v))| {
            v.as_deref()
                .is_some_and(|v| serde_json::from_slice::<serde_json::Value>(v).is_ok())
        })
        .map(|(i, (_, key, value))| record(i, key, value.expect("a value")))
        .take(RECORDS)
        .collect();
    Case {
        name: "demo",
        topic: sluice::demo::TOPIC,
        decoder: decoder(&config.routes[0], columns),
        records,
    }
}

/// The wide table's columns: (name, type oid, typmod); `sku` is
/// varchar(64), `price` and `tax` numeric(12,2), `ratio` numeric.
const WIDE: [(&str, u32, i32); 30] = [
    ("id", 20, -1),
    ("account", 20, -1),
    ("bytes_in", 20, -1),
    ("bytes_out", 20, -1),
    ("qty", 23, -1),
    ("region_id", 23, -1),
    ("attempt", 23, -1),
    ("priority", 21, -1),
    ("name", 25, -1),
    ("email", 25, -1),
    ("country", 25, -1),
    ("note", 25, -1),
    ("sku", 1043, 64 + 4),
    ("price", 1700, numeric(12, 2)),
    ("tax", 1700, numeric(12, 2)),
    ("ratio", 1700, -1),
    ("active", 16, -1),
    ("flagged", 16, -1),
    ("created_at", 1184, -1),
    ("updated_at", 1184, -1),
    ("shipped_at", 1184, -1),
    ("local_time", 1114, -1),
    ("due", 1082, -1),
    ("attrs", 3802, -1),
    ("tags", 3802, -1),
    ("raw_meta", 114, -1),
    ("lat", 701, -1),
    ("lon", 701, -1),
    ("score", 700, -1),
    ("trace_id", 2950, -1),
];

fn wide_case() -> Case {
    let mut route = String::from("topic: wide\ntable: public.wide\ncolumns:\n");
    for (name, _, _) in WIDE {
        route.push_str(&format!("  {name}: /{name}\n"));
    }
    let columns = WIDE
        .iter()
        .map(|&(name, oid, typmod)| column(name, oid, typmod, name == "id"))
        .collect();
    let records = (0..RECORDS)
        .map(|i| {
            let value = serde_json::json!({
                "id": 9_000_000_000u64 + i as u64,
                "account": 42 + i % 977,
                "bytes_in": i * 1_337,
                "bytes_out": i * 7_331,
                "qty": i % 50,
                "region_id": i % 12,
                "attempt": 1 + i % 3,
                "priority": i % 5,
                "name": format!("Customer Number {i}"),
                "email": format!("customer.{i}@example.com"),
                "country": (["DE", "FR", "US", "JP"][i % 4]),
                "note": "left at the door, ring twice",
                "sku": format!("SKU-{:06}", i % 100_000),
                "price": format!("{}.{:02}", 10 + i % 990, i % 100),
                "tax": format!("{}.{:02}", i % 90, i % 100),
                "ratio": 0.125 + (i % 8) as f64,
                "active": i % 2 == 0,
                "flagged": "false",
                "created_at": format!("2026-11-22T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
                "updated_at": format!("2026-11-22T11:{:02}:{:02}.123456+01:00", (i / 60) % 60, i % 60),
                "shipped_at": 1_795_000_000_000u64 + i as u64,
                "local_time": format!("2026-11-22 12:{:02}:{:02}", (i / 60) % 60, i % 60),
                "due": format!("2026-12-{:02}", 1 + i % 28),
                "attrs": { "color": "red", "size": i % 10, "gift": i % 3 == 0 },
                "tags": ["a", "b", format!("t{}", i % 7)],
                "raw_meta": { "source": "web", "v": 2 },
                "lat": 52.52 + (i % 100) as f64 / 1000.0,
                "lon": 13.405 - (i % 100) as f64 / 1000.0,
                "score": (i % 1000) as f64 / 10.0,
                "trace_id": format!("7f1c2a4e-9b3d-4c5e-8f6a-{:012x}", i),
            });
            record(i, None, value.to_string().into_bytes())
        })
        .collect();
    Case {
        name: "wide",
        topic: "wide",
        decoder: decoder(&route_config(&route), columns),
        records,
    }
}

fn route_config(yaml: &str) -> RouteConfig {
    serde_yaml::from_str(yaml).expect("route YAML")
}

fn raw_case() -> Case {
    let route = "topic: raw\ntable: public.raw_events\nformat: raw\ncolumns:\n  \
                 payload: $value\n  kafka_key: $key\n  src_topic: $topic\n  \
                 src_partition: $partition\n  src_offset: $offset\n  kafka_ts: $timestamp\n";
    let columns = vec![
        column("payload", 17, -1, true),
        column("kafka_key", 17, -1, false),
        column("src_topic", 25, -1, true),
        column("src_partition", 23, -1, true),
        column("src_offset", 20, -1, true),
        column("kafka_ts", 1184, -1, false),
    ];
    // Opaque values of a typical protobuf/Avro size.
    let records = (0..RECORDS)
        .map(|i| {
            let value: Vec<u8> = (0..200 + i % 64).map(|b| (b * 31 + i) as u8).collect();
            record(i, Some(format!("device-{}", i % 500).into_bytes()), value)
        })
        .collect();
    let route = route_config(route);
    assert_eq!(route.format, Format::Raw);
    Case {
        name: "raw",
        topic: "raw",
        decoder: decoder(&route, columns),
        records,
    }
}

fn main() {
    let cases = [demo_case(), wide_case(), raw_case()];
    let smoke = std::env::args().any(|a| a == "--smoke")
        || std::env::var("SLUICE_BENCH_QUICK").is_ok_and(|v| v == "1");
    // A smoke run proves each case decodes; a full one counts over more.
    let n = if smoke { 100 } else { 100_000 };
    for case in &cases {
        let (allocs, bytes) = case.allocs_per_record(n);
        println!(
            "record_path/{:<5} {:>2} columns  {allocs:>6.2} allocations/record  {bytes:>5.0} COPY bytes/record",
            case.name,
            case.decoder.columns().len(),
        );
    }
    if smoke {
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("record_path");
    // One record per iteration: time is ns/record, throughput records/s
    // on one core.
    group.throughput(Throughput::Elements(1));
    for case in &cases {
        let mut path = case.path();
        let mut i = 0;
        group.bench_function(case.name, |b| {
            b.iter(|| {
                i += 1;
                black_box(case.one(i, &mut path))
            })
        });
    }
    group.finish();
    criterion.final_summary();
}
