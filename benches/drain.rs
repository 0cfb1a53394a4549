//! The end-to-end drain benchmark: a backlog in librdkafka's mock cluster
//! drained by sluice into a throwaway PostgreSQL (the `sluice demo`
//! workload: an event table of bigint, text, numeric, timestamptz and jsonb
//! columns, unique on partition and offset), each drain on a fresh
//! database, interleaved within each run:
//!
//! - sluice append (binary COPY) straight to Postgres, and through PgBouncer
//!   in `pool_mode = transaction` (as many server connections as sluice's
//!   `pool_size`);
//! - sluice `write_method: insert` (multi-row INSERT), sluice upsert (keyed
//!   on partition and offset) without and with a version guard (`version:
//!   seq`);
//! - the reference writes of the same rows by hand (refs.rs: R1, R1b, R2,
//!   R3, R3g, R3u), then the medians and the ratios issue #14 sets targets
//!   for.
//!
//! ```text
//! cargo bench --bench drain -- [--records N] [--partitions P] [--runs K]
//!     [--max-rows 1000,5000] [--direct-only] [--no-refs] [--pin]
//!     [--latency [--rate N] [--latency-secs S]] [--json PATH]
//!     [--librdkafka key=value ...] [--tansu "$(./dev tansu-prebuilt)"]
//!     [--only append,insert,r2,...]
//! ```
//!
//! An append drain with sluice in a process of its own (`sluice run`,
//! process.rs) reading the mock cluster measures sluice's own CPU and peak
//! RSS against a broker that keeps to librdkafka's fetch limits. `--tansu
//! BIN` (tansu.rs) adds the same drain from a tansu broker process, and
//! runs `--latency` against tansu instead of the mock cluster.
//! `--pin` (pin.rs) puts Postgres on CPU 0 and this process on CPU 1 and
//! prints the cores each side kept busy; `--latency` (latency.rs) adds an
//! open-loop run at half the measured rate. Everything is also written as
//! JSON (`--json`, default target/drain-results.json) for benches/chart.py.
//! Figures and the machine they came from: docs/performance.md. CI runs it
//! on a tiny input (`./dev test`) so that it does not rot; no figure is
//! asserted anywhere.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

// benches/drain/*.rs: not benches/*.rs, which cargo would take for benches.
#[path = "drain/args.rs"]
mod args;
#[path = "drain/latency.rs"]
mod latency;
#[path = "drain/pin.rs"]
mod pin;
#[path = "drain/process.rs"]
mod process;
#[path = "drain/refs.rs"]
mod refs;
#[path = "drain/refs_insert.rs"]
mod refs_insert;
#[path = "drain/refs_unnest.rs"]
mod refs_unnest;
#[path = "drain/results.rs"]
mod results;
#[path = "drain/tansu.rs"]
mod tansu;

use results::{Results, Sample, APPEND, GUARDED, INSERT, POOLED, PROCESS, PROCESS_MOCK, UPSERT};
use sluice::config::{Mode, WriteMethod};
use sluice::demo::{drain_with, CpuProbe, DemoArgs, DrainOptions, DrainReport, Variant};
use sluice::embedded::pgbouncer::PgBouncer;
use sluice::embedded::postgres::{EmbeddedPostgres, Options};

/// sluice's `pool_size` in the demo configuration: PgBouncer gets as many
/// server connections, so the pooler, not a shortage, is what is measured.
const POOL_SIZE: u32 = 4;

/// One sluice drain of a run: its name, route and connection.
struct Drain {
    /// Its name for `--only` (args::SHORT_NAMES).
    short: &'static str,
    method: &'static str,
    mode: Mode,
    write_method: WriteMethod,
    version: Option<&'static str>,
    pooled: bool,
}

fn drains(args: &args::Args) -> Vec<Drain> {
    let drain = |(short, method), mode, write_method, version, pooled| Drain {
        short,
        method,
        mode,
        write_method,
        version,
        pooled,
    };
    let (pooled, more) = (!args.direct_only, !args.no_refs);
    [
        (
            drain(
                ("append", APPEND),
                Mode::Append,
                WriteMethod::Copy,
                None,
                false,
            ),
            true,
        ),
        (
            drain(
                ("pooled", POOLED),
                Mode::Append,
                WriteMethod::Copy,
                None,
                true,
            ),
            pooled,
        ),
        (
            drain(
                ("insert", INSERT),
                Mode::Append,
                WriteMethod::Insert,
                None,
                false,
            ),
            more,
        ),
        (
            drain(
                ("upsert", UPSERT),
                Mode::Upsert,
                WriteMethod::Copy,
                None,
                false,
            ),
            more,
        ),
        // The key is each record's coordinates, so the guard never skips
        // a row: what is measured is its cost on every row.
        (
            drain(
                ("guarded", GUARDED),
                Mode::Upsert,
                WriteMethod::Copy,
                Some("seq"),
                false,
            ),
            more,
        ),
    ]
    .into_iter()
    .filter(|(d, by_default)| args.runs(d.short, *by_default))
    .map(|(d, _)| d)
    .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // As `sluice` itself does (src/malloc.rs), so the in-process drains
    // measure the same allocator settings.
    sluice::malloc::tune();
    let args = args::parse();
    // Before pinning, which leaves this process one CPU.
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Before the drains start librdkafka's and the sink's threads, which
    // inherit it; the runtime's threads exist already (`-a` takes them).
    if args.pin {
        pin::pin_self().expect("pinning this process");
    }
    // The latency run reads each row's commit time (pg_xact_commit_timestamp).
    let options = Options {
        settings: args
            .latency
            .then(|| ("track_commit_timestamp".to_string(), "on".to_string()))
            .into_iter()
            .collect(),
        ..Options::default()
    };
    let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start_with(options))
        .await
        .expect("start task")
        .expect("embedded PostgreSQL (apt install postgresql)");
    let postmaster = pin::postmaster_pid(&pg.data_dir());
    if args.pin {
        pin::pin_tree(postmaster.expect("postmaster.pid")).expect("pinning Postgres");
    }
    let pooler = args
        .runs("pooled", !args.direct_only)
        .then(|| PgBouncer::start(&pg, POOL_SIZE).expect("pgbouncer (apt install pgbouncer)"));
    let bouncer = pooler.as_ref().map(PgBouncer::pid);
    if let (true, Some(pid)) = (args.pin, bouncer) {
        pin::pin_tree(pid).expect("pinning PgBouncer");
    }
    let probe: CpuProbe = Arc::new(move || {
        vec![
            postmaster.and_then(pin::tree_cpu),
            bouncer.and_then(pin::tree_cpu),
        ]
    });
    let demo = DemoArgs {
        postgres_url: None,
        records: args.records,
        partitions: args.partitions,
        keys: 10_000.min(args.records.max(1)),
        write_example: None,
        mode: Default::default(),
    };
    println!(
        "drain: {} records, {} partitions, pool_size {POOL_SIZE}, max_rows {:?}, {} run(s); {cores} cores{}",
        args.records,
        args.partitions,
        args.max_rows,
        args.runs,
        if args.pin { "; pinned: postgres and pgbouncer on CPU 0, sluice on CPU 1" } else { "" },
    );
    let load_before = loadavg();
    let mut results = Results {
        pinned: args.pin,
        ..Results::default()
    };
    let mut rows: HashMap<usize, refs::Rows> = HashMap::new();
    for run in 1..=args.runs {
        for &max_rows in &args.max_rows {
            for d in drains(&args) {
                let options = DrainOptions {
                    variant: Variant {
                        write_method: d.write_method,
                        version: d.version.map(str::to_string),
                        max_rows: Some(max_rows),
                        extra_columns: Vec::new(),
                        librdkafka: args.librdkafka.clone(),
                    },
                    probe: Some(probe.clone()),
                };
                let demo = DemoArgs {
                    mode: d.mode,
                    ..demo.clone()
                };
                let report =
                    drain_one(&pg, pooler.as_ref().filter(|_| d.pooled), &demo, &options).await;
                let sample = sample(run, max_rows, d.method, &report);
                print_run(&sample, &report, args.pin);
                results.samples.push(sample);
            }
            // sluice in a process of its own, reading the mock cluster (which
            // keeps to librdkafka's fetch limits, as a Kafka broker does),
            // then tansu (which answers a fetch with all it has).
            let brokers = [
                (PROCESS_MOCK, None, args.runs("process-mock", true)),
                (PROCESS, args.tansu.as_deref(), args.runs("process", true)),
            ];
            for (method, tansu, wanted) in brokers {
                if !wanted || (method == PROCESS && tansu.is_none()) {
                    continue;
                }
                let variant = Variant {
                    max_rows: Some(max_rows),
                    librdkafka: args.librdkafka.clone(),
                    ..Variant::default()
                };
                let drained = process::drain(&pg, tansu, &demo, variant, probe.clone()).await;
                let mut sample = sample(run, max_rows, method, &drained.report);
                sample.rss_kb = drained.peak_rss_kb;
                print_run(&sample, &drained.report, args.pin);
                let rss = drained
                    .peak_rss_kb
                    .map_or("?".into(), |k| format!("{k} kB"));
                println!(
                    "run {run} max_rows {max_rows} {method}: peak RSS of the sluice process {rss}"
                );
                results.samples.push(sample);
            }
            let methods: Vec<refs::Method> = [
                refs::Method::R1,
                refs::Method::R1b,
                refs::Method::R2,
                refs::Method::R3,
                refs::Method::R3g,
                refs::Method::R3u,
            ]
            .into_iter()
            .filter(|m| args.runs(m.short(), !args.no_refs))
            .collect();
            if methods.is_empty() {
                continue;
            }
            if results.peak_rss.is_none() {
                // Before the reference rows are held: what the drains needed.
                let rss = peak_rss();
                println!("peak RSS after run 1's drains: {rss}");
                results.peak_rss = Some(rss);
            }
            if let std::collections::hash_map::Entry::Vacant(e) = rows.entry(max_rows) {
                let url = pg.create_database("drain").await.expect("database");
                e.insert(refs::extract(&url, &demo, max_rows).await);
            }
            let rows = &rows[&max_rows];
            for method in methods {
                let url = pg.create_database("drain").await.expect("database");
                let (elapsed, count) = refs::run(method, &url, rows).await;
                assert_eq!(count, rows.rows as i64, "{} wrote every row", method.name());
                let rate = rows.rows as f64 / elapsed.as_secs_f64();
                println!(
                    "run {run} max_rows {max_rows} {:<26} {:>6.2?}  {rate:>8.0} rows/s  rows {count}",
                    method.name(),
                    elapsed
                );
                results.samples.push(Sample {
                    max_rows,
                    method: method.name(),
                    run,
                    rate: Some(rate),
                    join: None,
                    cpu_us: None,
                    cores: None,
                    rss_kb: None,
                });
            }
        }
    }
    results.print_summary(&args.max_rows);
    if results.peak_rss.is_none() {
        results.peak_rss = Some(peak_rss());
    }
    println!("peak RSS: {}", results.peak_rss.as_deref().unwrap_or("?"));
    if args.latency {
        let rate = args
            .rate
            // Against tansu, half of what its own drain measured.
            .or_else(|| {
                let method = if args.tansu.is_some() {
                    PROCESS
                } else {
                    APPEND
                };
                results.rate(args.max_rows[0], method).map(|r| r / 2.0)
            });
        results.latency = Some(latency::run(&pg, &args, &demo, rate, probe.clone()).await);
    }
    let load_after = loadavg();
    println!("load averages (1, 5, 15 min): before {load_before}, after {load_after}");
    let setup = serde_json::json!({
        "records": args.records, "partitions": args.partitions, "runs": args.runs,
        "pool_size": POOL_SIZE, "max_rows": args.max_rows, "cores": cores, "pinned": args.pin,
        "librdkafka": args.librdkafka.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        // The binary given, not the one `./dev tansu-prebuilt` would give.
        "broker": match &args.tansu {
            Some(bin) => format!("tansu ({}), own process, for the process drain and the latency run", bin.display()),
            None => "librdkafka mock cluster, in process".to_string(),
        },
        "load_before": load_before, "load_after": load_after,
        "release": !cfg!(debug_assertions),
    });
    match results.write_json(&args.json, setup) {
        Ok(()) => println!("results: {}", args.json.display()),
        Err(e) => println!("results not written to {}: {e}", args.json.display()),
    }
}

/// One drain on a fresh database, through `pooler` when given.
async fn drain_one(
    pg: &EmbeddedPostgres,
    pooler: Option<&PgBouncer>,
    demo: &DemoArgs,
    options: &DrainOptions,
) -> DrainReport {
    let url = pg.create_database("drain").await.expect("database");
    let url = match pooler {
        None => url,
        Some(pooler) => {
            let database = url.rsplit('/').next().expect("a database name");
            pooler
                .ready(database, Duration::from_secs(20))
                .await
                .expect("pgbouncer ready");
            pooler.url(database)
        }
    };
    drain_with(&url, demo, false, options).await.expect("drain")
}

fn sample(run: usize, max_rows: usize, method: &'static str, r: &DrainReport) -> Sample {
    // CPU times come in 10 ms ticks: a shorter steady part says nothing.
    let cores = |i: usize| {
        let cpu = r.steady_cpu.get(i).copied().flatten();
        pin::cores(cpu, r.steady).filter(|_| r.steady >= Duration::from_secs(1))
    };
    Sample {
        max_rows,
        method,
        run,
        rate: r.steady_rate(),
        join: Some(r.join.as_secs_f64()),
        cpu_us: r
            .sink_cpu
            .map(|c| c.as_secs_f64() * 1e6 / r.produced as f64),
        cores: Some([cores(0), cores(1), cores(2)]),
        rss_kb: None,
    }
}

fn print_run(s: &Sample, r: &DrainReport, pinned: bool) {
    let cpu = s.cpu_us.map_or("?".into(), |c| format!("{c:.2}"));
    let busy = match s.cores {
        Some([Some(bench), Some(pg), bouncer]) => {
            let bouncer = bouncer
                .filter(|b| *b > 0.0)
                .map_or(String::new(), |b| format!(" pgbouncer {b:.2}"));
            let verdict = if pinned {
                results::saturated(bench, pg)
            } else {
                ""
            };
            format!("  cores busy: sluice {bench:.2} postgres {pg:.2}{bouncer}{verdict}")
        }
        _ => String::new(),
    };
    println!(
        "run {} max_rows {} {:<26} join {:>6.2?}  steady {:>18}  total {:>6.2?}  cpu {cpu} µs/record  rows {} dead letters {}{busy}",
        s.run,
        s.max_rows,
        s.method,
        r.join,
        r.steady_text(),
        r.sink_elapsed,
        r.rows,
        r.dead
    );
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

/// The load averages (1, 5, 15 min), for the machine's description.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "?".into())
}
