//! Reference writes for the drain benchmark: the demo's rows written into
//! the demo's table by hand, with no Kafka and no sluice, so the sink's
//! rate can be read against what Postgres takes on the same machine.
//!
//! - **R1**: one binary COPY of every row in one transaction, on one
//!   connection (the ceiling: no batching, no parallelism);
//! - **R1b**: the same COPY in chunks of sluice's `batch.max_rows`, each
//!   chunk its own transaction, over `pool_size` connections in parallel
//!   (sluice's shape, without its fence, offsets and Kafka);
//! - **R2**: R1b's chunks as multi-row `INSERT ... VALUES (...), (...)`,
//!   one statement of binary parameters per chunk, each its own
//!   transaction, over `pool_size` connections (`write_method: insert`'s
//!   shape: refs_insert.rs);
//! - **R3**: R1b's chunks staged: each COPY'd into a temp table
//!   (`ON COMMIT DROP`), then `INSERT ... SELECT ... ON CONFLICT (key) DO
//!   UPDATE` into the table (what an upsert route does per batch);
//! - **R3g**: R3 with the version guard an upsert route with `version:
//!   seq` adds (`WHERE t.seq IS NULL OR t.seq < EXCLUDED.seq`);
//! - **R3u**: R3 without the temp table: `INSERT ... SELECT * FROM
//!   unnest($1, ...)` of one binary array per column (refs_unnest.rs).
//!
//! The rows are decoded once, before any timing, by the crate's own
//! decoder planned on the real table, and kept as encoded COPY rows: what
//! is timed is Postgres taking them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::SinkExt;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use sluice::config::{Config, TableName};
use sluice::demo::{events, DemoArgs, Variant, TABLE};
use sluice::sink::catalog::{plan_route, read_table};
use sluice::sink::cell::Cell;
use sluice::sink::decode::RowDecoder;

use super::refs_insert::Statements;
use super::refs_unnest::Unnest;

/// Every column of the demo's table, as the route maps them.
pub const COLUMNS: &str =
    "amount, created_at, customer, doc, order_id, seq, src_offset, src_partition";
/// The table's unique index, the upsert's conflict target.
const KEY: &str = "src_partition, src_offset";

/// The demo's rows as binary COPY rows, in chunks of `batch.max_rows`.
pub struct Rows {
    pub chunks: Vec<Bytes>,
    pub rows: usize,
    pub pool_size: usize,
    /// R2's statements and parameters, split from `chunks` before any
    /// timing.
    pub inserts: Arc<Statements>,
    /// R3u's statement and arrays, built from `chunks` before any timing.
    pub unnest: Arc<Unnest>,
}

/// One reference write.
#[derive(Clone, Copy, Debug)]
pub enum Method {
    R1,
    R1b,
    R2,
    R3,
    R3g,
    R3u,
}

impl Method {
    /// Its name for `--only` (args::SHORT_NAMES).
    pub fn short(self) -> &'static str {
        match self {
            Method::R1 => "r1",
            Method::R1b => "r1b",
            Method::R2 => "r2",
            Method::R3 => "r3",
            Method::R3g => "r3g",
            Method::R3u => "r3u",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::R1 => "R1 one COPY",
            Method::R1b => "R1b chunked COPY",
            Method::R2 => "R2 multi-row INSERT",
            Method::R3 => "R3 staged upsert",
            Method::R3g => "R3g staged upsert guarded",
            Method::R3u => "R3u unnest upsert",
        }
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the reference database");
    tokio::spawn(connection);
    client
}

/// Creates the demo's table in the (fresh) database at `url`.
async fn create_table(client: &Client) {
    client
        .batch_execute(&sluice::demo::table_ddl())
        .await
        .expect("the demo's table");
}

/// Decodes the demo's events for `demo` (the sink's workload) into COPY
/// rows in chunks of `max_rows`, planned against the demo's table in the
/// database at `url`.
/// Offsets are counted per partition, as Kafka gives them; the malformed
/// events, dead letters in a drain, are left out.
pub async fn extract(url: &str, demo: &DemoArgs, max_rows: usize) -> Rows {
    let client = connect(url).await;
    create_table(&client).await;
    let variant = Variant {
        max_rows: Some(max_rows),
        ..Variant::default()
    };
    let yaml = sluice::demo::demo_config_with("localhost:9092", url, demo.mode, &variant);
    let config = Config::from_yaml(&yaml, |_| None).expect("the demo's configuration");
    let route = &config.routes[0];
    let table = TableName::parse(&route.table).expect("table name");
    let found = read_table(&client, &table)
        .await
        .expect("catalog")
        .expect("the demo's table");
    let planned = plan_route(0, route, &table, &found).expect("the demo's route plans");
    let names: Vec<&str> = planned.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.join(", "), COLUMNS, "the COPY column list");
    let types: Vec<Type> = planned.iter().map(|c| c.pg_type.clone()).collect();
    let decoder = RowDecoder::new(route.format, planned);

    let max_rows = config.batch.max_rows;
    let mut offsets = std::collections::HashMap::<i32, i64>::new();
    let mut cells = Vec::new();
    let mut chunks = Vec::new();
    let mut chunk = BytesMut::new();
    let (mut rows, mut in_chunk) = (0, 0);
    for (partition, key, value) in events(demo) {
        let offset = offsets.entry(partition).or_default();
        let record = sluice::record::Record {
            offset: *offset,
            timestamp_ms: None,
            key: key.map(Into::into),
            value: value.map(Into::into),
            headers: Vec::new(),
        };
        *offset += 1;
        if decoder
            .decode(sluice::demo::TOPIC, partition, &record, &mut cells)
            .is_err()
        {
            continue;
        }
        chunk.put_i16(cells.len() as i16);
        cells
            .iter()
            .for_each(|c: &Cell| c.write_copy_field(&mut chunk));
        rows += 1;
        in_chunk += 1;
        if in_chunk == max_rows {
            chunks.push(chunk.split().freeze());
            in_chunk = 0;
        }
    }
    if in_chunk > 0 {
        chunks.push(chunk.split().freeze());
    }
    Rows {
        inserts: Arc::new(Statements::new(&chunks, &types)),
        unnest: Arc::new(Unnest::new(&chunks, &types, KEY, "")),
        chunks,
        rows,
        pool_size: config.postgres.pool_size,
    }
}

/// One COPY of `chunks` into `into` (binary header, rows, trailer).
async fn copy(client: &Client, into: &str, chunks: &[Bytes]) {
    let sink = client
        .copy_in(&format!(
            "COPY {into} ({COLUMNS}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .expect("COPY");
    futures::pin_mut!(sink);
    let mut header = BytesMut::new();
    header.put_slice(b"PGCOPY\n\xff\r\n\0");
    header.put_i32(0); // flags
    header.put_i32(0); // header extension length
    sink.send(header.freeze()).await.expect("COPY header");
    for chunk in chunks {
        sink.send(chunk.clone()).await.expect("COPY rows");
    }
    // The trailer: a field count of -1.
    sink.send(Bytes::from_static(b"\xff\xff"))
        .await
        .expect("COPY trailer");
    sink.finish().await.expect("COPY end");
}

/// Runs `method` into a fresh database at `url`; returns the elapsed time
/// and the rows in the table afterwards.
pub async fn run(method: Method, url: &str, rows: &Rows) -> (Duration, i64) {
    let setup = connect(url).await;
    create_table(&setup).await;
    let connections = match method {
        Method::R1 => 1,
        Method::R1b | Method::R2 | Method::R3 | Method::R3g | Method::R3u => rows.pool_size,
    };
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(connect(url).await);
    }
    let chunks = Arc::new(rows.chunks.clone());
    let (inserts, unnest) = (rows.inserts.clone(), rows.unnest.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (chunks, inserts, next) = (chunks.clone(), inserts.clone(), next.clone());
            let unnest = unnest.clone();
            tokio::spawn(async move {
                if let Method::R1 = method {
                    client.batch_execute("BEGIN").await.expect("BEGIN");
                    copy(&client, TABLE, &chunks).await;
                    client.batch_execute("COMMIT").await.expect("COMMIT");
                    return;
                }
                // Each connection takes the next chunk, as sluice's
                // partition workers share its pool.
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { return };
                    client.batch_execute("BEGIN").await.expect("BEGIN");
                    match method {
                        Method::R3 => upsert(&client, chunk, "").await,
                        Method::R3g => {
                            upsert(
                                &client,
                                chunk,
                                " WHERE t.seq IS NULL OR t.seq < EXCLUDED.seq",
                            )
                            .await
                        }
                        Method::R2 => inserts.insert(&client, i).await,
                        Method::R3u => unnest.upsert(&client, i).await,
                        _ => copy(&client, TABLE, std::slice::from_ref(chunk)).await,
                    }
                    client.batch_execute("COMMIT").await.expect("COMMIT");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("reference writer");
    }
    let elapsed = started.elapsed();
    let count = setup
        .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
        .await
        .expect("count")
        .get(0);
    (elapsed, count)
}

/// One staged upsert of `chunk`, in the open transaction; `guard` ends
/// the `DO UPDATE`.
async fn upsert(client: &Client, chunk: &Bytes, guard: &str) {
    let set: Vec<String> = COLUMNS
        .split(", ")
        .filter(|c| !KEY.split(", ").any(|k| k == *c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE stage ON COMMIT DROP AS \
             SELECT {COLUMNS} FROM {TABLE} WITH NO DATA"
        ))
        .await
        .expect("stage");
    copy(client, "stage", std::slice::from_ref(chunk)).await;
    client
        .batch_execute(&format!(
            "INSERT INTO {TABLE} AS t ({COLUMNS}) SELECT {COLUMNS} FROM stage \
             ON CONFLICT ({KEY}) DO UPDATE SET {}{guard}",
            set.join(", ")
        ))
        .await
        .expect("apply the stage");
}
