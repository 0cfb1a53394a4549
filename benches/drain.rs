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
}

fn args() -> Args {
    let mut args = Args {
        records: 1_000_000,
        partitions: 32,
        runs: 3,
        direct_only: false,
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
    for run in 1..=args.runs {
        let url = pg.create_database("drain").await.expect("database");
        let report = drain(&url, &demo, false).await.expect("direct drain");
        print_run(run, "direct", &report);
        direct.extend(report.steady_rate());
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
}

fn print_run(run: usize, via: &str, r: &DrainReport) {
    println!(
        "run {run} {via:<9} join {:>6.2?}  steady {:>18}  total {:>6.2?}  rows {} dead letters {}",
        r.join,
        r.steady_text(),
        r.sink_elapsed,
        r.rows,
        r.dead
    );
}
