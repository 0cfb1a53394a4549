//! The drain benchmark's command line (no clap: cargo bench passes its own
//! `--bench`, and a few flags are all it takes).

use std::path::PathBuf;

pub struct Args {
    pub records: usize,
    pub partitions: i32,
    pub runs: usize,
    pub direct_only: bool,
    /// Only the append drains (direct, PgBouncer): no upsert, insert or
    /// reference writes.
    pub no_refs: bool,
    /// `batch.max_rows` values; each run goes through every one.
    pub max_rows: Vec<usize>,
    /// Postgres (and PgBouncer) on CPU 0, this process on CPU 1.
    pub pin: bool,
    pub latency: bool,
    /// The latency run's producer rate; `None`: half the measured steady
    /// rate of the direct append drain.
    pub rate: Option<f64>,
    pub latency_secs: u64,
    /// Where the results go as JSON (benches/chart.py reads them).
    pub json: PathBuf,
    /// `--librdkafka key=value`, repeatable: consumer settings for every
    /// drain (e.g. `fetch.wait.max.ms=10`), to try the fetch tuning.
    pub librdkafka: Vec<(String, String)>,
    /// `--tansu BIN`: also drain from tansu with sluice as its own process
    /// (process.rs), and run `--latency` against tansu.
    pub tansu: Option<PathBuf>,
    /// `--only append,insert,r2,...`: just these writers (the short names
    /// of [`SHORT_NAMES`]), for an A/B of one path, whatever
    /// `--direct-only` and `--no-refs` say; `None`: every one those allow.
    pub only: Option<Vec<String>>,
}

/// The writers `--only` names: sluice's drains, the process drains from
/// the mock cluster (`process-mock`) and from tansu (`process`), and the
/// reference writes.
pub const SHORT_NAMES: [&str; 13] = [
    "append",
    "pooled",
    "insert",
    "upsert",
    "guarded",
    "process-mock",
    "process",
    "r1",
    "r1b",
    "r2",
    "r3",
    "r3g",
    "r3u",
];

impl Args {
    /// Whether the writer of short name `name` runs: as `--only` says,
    /// else `by_default` (what `--direct-only` and `--no-refs` leave).
    pub fn runs(&self, name: &str, by_default: bool) -> bool {
        match &self.only {
            Some(only) => only.iter().any(|o| o == name),
            None => by_default,
        }
    }
}

pub fn parse() -> Args {
    let mut args = Args {
        records: 1_000_000,
        partitions: 32,
        runs: 3,
        direct_only: false,
        no_refs: false,
        max_rows: vec![1000],
        pin: false,
        latency: false,
        rate: None,
        latency_secs: 60,
        json: PathBuf::from("target/drain-results.json"),
        librdkafka: Vec::new(),
        tansu: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut text =
            |name: &str| -> String { it.next().unwrap_or_else(|| panic!("{name} takes a value")) };
        let number = |name: &str, v: String| -> usize {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, not {v}"))
        };
        match arg.as_str() {
            "--records" => args.records = number(&arg, text(&arg)),
            "--partitions" => args.partitions = number(&arg, text(&arg)) as i32,
            "--runs" => args.runs = number(&arg, text(&arg)).max(1),
            "--direct-only" => args.direct_only = true,
            "--no-refs" => args.no_refs = true,
            "--max-rows" => {
                args.max_rows = text(&arg)
                    .split(',')
                    .map(|v| number("--max-rows", v.trim().to_string()).max(1))
                    .collect()
            }
            "--pin" => args.pin = true,
            "--latency" => args.latency = true,
            "--rate" => args.rate = Some(number(&arg, text(&arg)) as f64),
            "--latency-secs" => args.latency_secs = number(&arg, text(&arg)) as u64,
            "--json" => args.json = PathBuf::from(text(&arg)),
            "--tansu" => args.tansu = Some(PathBuf::from(text(&arg))),
            "--only" => {
                let names: Vec<String> = text(&arg)
                    .split(',')
                    .map(|n| n.trim().to_lowercase())
                    .collect();
                if let Some(bad) = names.iter().find(|n| !SHORT_NAMES.contains(&n.as_str())) {
                    panic!("--only takes some of {SHORT_NAMES:?}, not {bad}");
                }
                args.only = Some(names);
            }
            "--librdkafka" => {
                let setting = text(&arg);
                let (key, value) = setting
                    .split_once('=')
                    .unwrap_or_else(|| panic!("--librdkafka takes key=value, not {setting}"));
                args.librdkafka.push((key.to_string(), value.to_string()));
            }
            // What cargo bench passes to every bench target.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    args
}
