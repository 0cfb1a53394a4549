//! The end-to-end drain benchmark: a backlog in librdkafka's mock cluster
//! drained by sluice into a throwaway PostgreSQL (the `sluice demo`
//! workload: an event table of bigint, text, numeric, timestamptz and jsonb
//! columns, unique on partition and offset), straight to Postgres and
//! through PgBouncer in `pool_mode = transaction` (Debian's pgbouncer, with
//! as many server connections as sluice's `pool_size`), interleaved, each
//! on a fresh database. Prints, per run, the group join and the steady rate
//! (records/s from the first committed batch to the last), then the median
//! per connection path and the PgBouncer/direct ratio.
//!
//!   cargo bench --bench drain -- [--records N] [--partitions P] [--runs K] [--direct-only]
//!
//! Figures and the machine they came from: docs/performance.md. CI runs it
//! on a tiny input (`./dev test`) so that it does not rot; no figure is
//! asserted anywhere.

use std::time::Duration;

// benches/drain/refs.rs: not benches/refs.rs, which cargo would take for a bench.
#[path = "drain/refs.rs"]
mod refs;

use sluice::config::Mode;
use sluice::demo::{drain, DemoArgs, DrainReport};
use sluice::embedded::pgbouncer::PgBouncer;
use sluice::embedded::postgres::EmbeddedPostgres;

/// sluice's `pool_size` in the demo configuration: PgBouncer gets as many
/// server connections, so the pooler, not a shortage, is what is measured.
const POOL_SIZE: u32 = 4;

struct Args {
    records: usize,
    partitions: i32,
    runs: usize,
    direct_only: bool,
    no_refs: bool,
}

fn args() -> Args {
    let mut args = Args {
        records: 1_000_000,
        partitions: 32,
        runs: 3,
        direct_only: false,
        no_refs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a number"))
        };
        match arg.as_str() {
            "--records" => args.records = value("--records"),
            "--partitions" => args.partitions = value("--partitions") as i32,
            "--runs" => args.runs = value("--runs").max(1),
            "--direct-only" => args.direct_only = true,
            "--no-refs" => args.no_refs = true,
            // What cargo bench passes to every bench target.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// The median, `None` for no figures.
fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = args();
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start)
        .await
        .expect("start task")
        .expect("embedded PostgreSQL (apt install postgresql)");
    let pooler = (!args.direct_only)
        .then(|| PgBouncer::start(&pg, POOL_SIZE).expect("pgbouncer (apt install pgbouncer)"));
    let demo = DemoArgs {
        postgres_url: None,
        records: args.records,
        partitions: args.partitions,
        keys: 10_000.min(args.records.max(1)),
        write_example: None,
        mode: Default::default(),
    };
    println!(
        "drain: {} records, {} partitions, pool_size {POOL_SIZE}, max_rows 1000, {} run(s); {} cores",
        args.records,
        args.partitions,
        args.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut direct = Vec::new();
    let mut pooled = Vec::new();
    let mut upsert = Vec::new();
    let mut cpu = Vec::new();
    let mut references: Vec<(refs::Method, Vec<f64>)> =
        [refs::Method::R1, refs::Method::R1b, refs::Method::R3]
            .into_iter()
            .map(|m| (m, Vec::new()))
            .collect();
    let mut rows = None;
    for run in 1..=args.runs {
        let url = pg.create_database("drain").await.expect("database");
        let report = drain(&url, &demo, false).await.expect("direct drain");
        print_run(run, "direct", &report);
        direct.extend(report.steady_rate());
        cpu.extend(
            report
                .sink_cpu
                .map(|c| c.as_secs_f64() * 1e6 / report.produced as f64),
        );
        if let Some(pooler) = &pooler {
            let url = pg.create_database("drain").await.expect("database");
            let database = url.rsplit('/').next().expect("a database name");
            pooler
                .ready(database, Duration::from_secs(20))
                .await
                .expect("pgbouncer ready");
            let report = drain(&pooler.url(database), &demo, false)
                .await
                .expect("drain through pgbouncer");
            print_run(run, "pgbouncer", &report);
            pooled.extend(report.steady_rate());
        }
        if args.no_refs {
            continue;
        }
        let upsert_demo = DemoArgs {
            mode: Mode::Upsert,
            ..demo.clone()
        };
        let url = pg.create_database("drain").await.expect("database");
        let report = drain(&url, &upsert_demo, false)
            .await
            .expect("upsert drain");
        print_run(run, "upsert", &report);
        upsert.extend(report.steady_rate());
        if rows.is_none() {
            // Before the reference rows are held: what the drains needed.
            println!("peak RSS after run 1's drains: {}", peak_rss());
            let url = pg.create_database("drain").await.expect("database");
            rows = Some(refs::extract(&url, &demo).await);
        }
        let rows = rows.as_ref().expect("extracted");
        for (method, rates) in &mut references {
            let url = pg.create_database("drain").await.expect("database");
            let (elapsed, count) = refs::run(*method, &url, rows).await;
            assert_eq!(count, rows.rows as i64, "{} wrote every row", method.name());
            let rate = rows.rows as f64 / elapsed.as_secs_f64();
            println!(
                "run {run} {:<17} {:>6.2?}  {rate:>8.0} rows/s  rows {count}",
                method.name(),
                elapsed
            );
            rates.push(rate);
        }
    }
    let (direct, pooled) = (median(direct), median(pooled));
    for (via, rate) in [("direct", direct), ("pgbouncer", pooled)] {
        if via == "pgbouncer" && args.direct_only {
            continue;
        }
        match rate {
            Some(rate) => println!("median steady rate: {via} {rate:.0} records/s"),
            None => println!("median steady rate: {via}: too small a backlog to time"),
        }
    }
    if let (Some(direct), Some(pooled)) = (direct, pooled) {
        println!("pgbouncer / direct: {:.2}", pooled / direct);
    }
    if let Some(cpu) = median(cpu) {
        println!(
            "sluice CPU (direct, median): {cpu:.2} µs/record (user + system of this process \
             over the sink's run: the sink and the in-process mock cluster serving it)"
        );
    }
    if args.no_refs {
        return;
    }
    let upsert = median(upsert);
    match upsert {
        Some(rate) => println!("median steady rate: upsert {rate:.0} records/s"),
        None => println!("median steady rate: upsert: too small a backlog to time"),
    }
    let reference = |m: usize| median(references[m].1.clone());
    for (method, rates) in &references {
        if let Some(rate) = median(rates.clone()) {
            println!("median {:<17} {rate:.0} rows/s", method.name());
        }
    }
    if let (Some(sluice), Some(r1b)) = (direct, reference(1)) {
        println!("sluice / R1b: {:.2}", sluice / r1b);
    }
    if let (Some(sluice), Some(r3)) = (upsert, reference(2)) {
        println!("sluice upsert / R3: {:.2}", sluice / r3);
    }
}

/// The process's peak resident set (`VmHWM`), as the kernel reports it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn print_run(run: usize, via: &str, r: &DrainReport) {
    let cpu = r.sink_cpu.map_or("?".into(), |c| {
        format!("{:.2}", c.as_secs_f64() * 1e6 / r.produced as f64)
    });
    println!(
        "run {run} {via:<9} join {:>6.2?}  steady {:>18}  total {:>6.2?}  cpu {cpu} µs/record  rows {} dead letters {}",
        r.join,
        r.steady_text(),
        r.sink_elapsed,
        r.rows,
        r.dead
    );
}
