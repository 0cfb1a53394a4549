//! What the drain benchmark measured: every run's figure per method and
//! batch size, the medians and ratios printed at the end, and the same as
//! JSON for benches/chart.py (docs/performance.png).

use std::path::Path;

use serde_json::{json, Value};

/// One method's figure in one run.
pub struct Sample {
    pub max_rows: usize,
    pub method: &'static str,
    pub run: usize,
    /// rows/s: a reference's over its whole run, a drain's steady rate
    /// (`None`: drained before a second look at the offsets, too small a
    /// backlog to time).
    pub rate: Option<f64>,
    /// A drain's group join, seconds.
    pub join: Option<f64>,
    /// A drain's CPU of this process per record, µs.
    pub cpu_us: Option<f64>,
    /// With `--pin`, cores busy over a drain's steady part: this process,
    /// Postgres, PgBouncer.
    pub cores: Option<[Option<f64>; 3]>,
    /// A process drain's (process.rs): the sluice process's peak resident
    /// set, kB.
    pub rss_kb: Option<u64>,
}

/// The ratios issue #14 sets targets for: (name, sluice method, reference).
const RATIOS: [(&str, &str, &str); 6] = [
    ("sluice / R1b", APPEND, "R1b chunked COPY"),
    ("sluice insert / R2", INSERT, "R2 multi-row INSERT"),
    ("sluice upsert / R3", UPSERT, "R3 staged upsert"),
    ("sluice upsert guarded / R3", GUARDED, "R3 staged upsert"),
    // Like for like: the guard on both sides.
    (
        "sluice upsert guarded / R3g",
        GUARDED,
        "R3g staged upsert guarded",
    ),
    // Which upsert shape Postgres takes faster (sluice stages).
    (
        "R3u unnest / R3 staged",
        "R3u unnest upsert",
        "R3 staged upsert",
    ),
];
pub const APPEND: &str = "sluice append";
pub const POOLED: &str = "sluice append pgbouncer";
pub const INSERT: &str = "sluice insert";
pub const UPSERT: &str = "sluice upsert";
pub const GUARDED: &str = "sluice upsert guarded";
/// `--tansu`: append from tansu, sluice in its own process (process.rs).
pub const PROCESS: &str = "sluice append, own process";
/// Append from the mock cluster (in the benchmark's process), sluice in
/// its own process: sluice's CPU and memory with a broker that keeps to
/// the fetch limits.
pub const PROCESS_MOCK: &str = "sluice append, own process, mock";

#[derive(Default)]
pub struct Results {
    /// `--pin`: one core per side, so a side near 1.0 is saturated.
    pub pinned: bool,
    pub samples: Vec<Sample>,
    pub peak_rss: Option<String>,
    pub latency: Option<Value>,
}

/// The median, `None` for no figures.
pub fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied()
}

impl Results {
    /// The median of `method`'s `field` at `max_rows`.
    fn median_of(
        &self,
        max_rows: usize,
        method: &str,
        field: impl Fn(&Sample) -> Option<f64>,
    ) -> Option<f64> {
        median(
            self.samples
                .iter()
                .filter(|s| s.max_rows == max_rows && s.method == method)
                .filter_map(field)
                .collect(),
        )
    }

    pub fn rate(&self, max_rows: usize, method: &str) -> Option<f64> {
        self.median_of(max_rows, method, |s| s.rate)
    }

    /// Methods in the order they were first measured.
    fn methods(&self, max_rows: usize) -> Vec<&'static str> {
        let mut methods: Vec<&'static str> = Vec::new();
        for s in self.samples.iter().filter(|s| s.max_rows == max_rows) {
            if !methods.contains(&s.method) {
                methods.push(s.method);
            }
        }
        methods
    }

    fn ratios(&self, max_rows: usize) -> Vec<(&'static str, f64)> {
        RATIOS
            .iter()
            .filter_map(|(name, sluice, reference)| {
                let (s, r) = (
                    self.rate(max_rows, sluice)?,
                    self.rate(max_rows, reference)?,
                );
                Some((*name, s / r))
            })
            .collect()
    }

    /// Prints the medians, ratios and CPU figures per batch size.
    pub fn print_summary(&self, sizes: &[usize]) {
        for &max_rows in sizes {
            println!("--- max_rows {max_rows}: medians ---");
            for method in self.methods(max_rows) {
                let unit = if method.starts_with("sluice") {
                    "records/s steady"
                } else {
                    "rows/s"
                };
                let rate = self
                    .rate(max_rows, method)
                    .map_or("not timed".into(), |r| format!("{r:.0} {unit}"));
                let mut line = format!("median {method:<26} {rate:>26}");
                if let Some(cpu) = self.median_of(max_rows, method, |s| s.cpu_us) {
                    line.push_str(&format!("  cpu {cpu:.2} µs/record"));
                }
                let core = |i: usize| self.median_of(max_rows, method, |s| s.cores?[i]);
                if let (Some(bench), Some(pg)) = (core(0), core(1)) {
                    line.push_str(&format!(
                        "  cores busy: sluice {bench:.2}, postgres {pg:.2}"
                    ));
                    if let Some(bouncer) = core(2) {
                        line.push_str(&format!(", pgbouncer {bouncer:.2}"));
                    }
                    if self.pinned {
                        line.push_str(saturated(bench, pg));
                    }
                }
                if let Some(rss) = self.median_of(max_rows, method, |s| s.rss_kb.map(|k| k as f64))
                {
                    line.push_str(&format!("  peak RSS {rss:.0} kB"));
                }
                println!("{line}");
            }
            if let (Some(d), Some(p)) = (self.rate(max_rows, APPEND), self.rate(max_rows, POOLED)) {
                println!("pgbouncer / direct: {:.2}", p / d);
            }
            for (name, ratio) in self.ratios(max_rows) {
                println!("{name}: {ratio:.2}");
            }
        }
    }

    /// Writes everything as JSON to `path` (its folder created).
    pub fn write_json(&self, path: &Path, setup: Value) -> std::io::Result<()> {
        let sizes: Vec<usize> = {
            let mut s: Vec<usize> = self.samples.iter().map(|s| s.max_rows).collect();
            s.dedup();
            s.sort();
            s.dedup();
            s
        };
        let medians: Vec<Value> = sizes
            .iter()
            .flat_map(|&n| self.methods(n).into_iter().map(move |m| (n, m)))
            .map(|(n, m)| {
                json!({
                    "max_rows": n, "method": m, "rate": self.rate(n, m),
                    "cpu_us_per_record": self.median_of(n, m, |s| s.cpu_us),
                    "peak_rss_kb": self.median_of(n, m, |s| s.rss_kb.map(|k| k as f64)),
                })
            })
            .collect();
        let ratios: Vec<Value> = sizes
            .iter()
            .flat_map(|&n| {
                self.ratios(n)
                    .into_iter()
                    .map(move |(r, v)| json!({"max_rows": n, "ratio": r, "value": v}))
            })
            .collect();
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|s| {
                json!({
                    "max_rows": s.max_rows, "method": s.method, "run": s.run, "rate": s.rate,
                    "join_s": s.join, "cpu_us_per_record": s.cpu_us, "peak_rss_kb": s.rss_kb,
                    "cores_busy": s.cores.map(|c| json!({"sluice": c[0], "postgres": c[1], "pgbouncer": c[2]})),
                })
            })
            .collect();
        let doc = json!({
            "setup": setup,
            "peak_rss": self.peak_rss,
            "samples": samples,
            "medians": medians,
            "ratios": ratios,
            "latency": self.latency,
        });
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
    }
}

/// Which side a drain saturates, from the cores each side kept busy (one
/// core each under `--pin`).
pub fn saturated(sluice: f64, postgres: f64) -> &'static str {
    match (sluice >= 0.9, postgres >= 0.9) {
        (true, true) => " (both saturated)",
        (true, false) => " (sluice saturated)",
        (false, true) => " (postgres saturated)",
        (false, false) => " (neither saturated: waiting)",
    }
}
