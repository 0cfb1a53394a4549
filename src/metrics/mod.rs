//! Prometheus metrics. One `Metrics` value is registered on a registry the
//! application creates and passes down; nothing uses the global registry.

mod pg;
#[cfg(test)]
mod tests;

use prometheus::{
    Counter, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

pub use pg::{Phase, PhaseClock, PoolMetrics, TransactionPhases};

/// The buckets of every latency histogram, 1 ms to 33 s doubling: one
/// scale for a batch's commit and for its parts (pool wait, transaction
/// phases), so they compare bucket for bucket.
fn latency_buckets() -> Result<Vec<f64>, prometheus::Error> {
    prometheus::exponential_buckets(0.001, 2.0, 16)
}

/// Registers `c` on `registry` and hands it back.
fn reg<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    c: T,
) -> Result<T, prometheus::Error> {
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

#[derive(Clone)]
pub struct Metrics {
    pub rows_written: IntCounterVec,
    pub rows_skipped: IntCounterVec,
    pub rows_deleted: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub batch_commit_seconds: Histogram,
    pub batch_rows: Histogram,
    pub batch_bytes: Histogram,
    pub pg_errors: IntCounterVec,
    pub retries: IntCounter,
    pub fence_rejections: IntCounter,
    pub ambiguous_commits: IntCounter,
    pub rewinds: IntCounter,
    pub rebalances: IntCounterVec,
    pub assigned_partitions: IntGauge,
    pub partitions_halted: IntGauge,
    pub committed_offset: IntGaugeVec,
    pub lag_records: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub throttle_wait_seconds: Counter,
    pub throttle_rate: Gauge,
    pub partition_rows: IntCounterVec,
    pub kafka_errors: IntCounter,
    pub kafka_brokers_up: IntGauge,
    pub abandoned_records: IntCounter,
    pub reclaims: IntCounter,
    pub worker_panics: IntCounter,
    pub offset_gap_records: IntCounterVec,
    pub offset_out_of_range: IntCounterVec,
    pub poison_storms: IntCounter,
    pub ready: IntGauge,
    pub throttle_min_rate: Gauge,
    /// The Postgres pool's state and checkout waits (pg::MeteredPool).
    pub pool: PoolMetrics,
    /// Time inside each batch transaction, by phase (sink::topic).
    pub phases: TransactionPhases,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            reg(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            reg(
                registry,
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?,
            )
        };
        let counter = |name: &str, help: &str| reg(registry, IntCounter::new(name, help)?);
        let tp = &["topic", "partition"];
        let build = IntGaugeVec::new(
            Opts::new("sluice_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        reg(registry, build)?;
        let metrics = Metrics {
            rows_written: counter_vec(
                "sluice_rows_written_total",
                "Rows written to target tables.",
                &["table", "mode"],
            )?,
            rows_skipped: counter_vec(
                "sluice_rows_skipped_total",
                "Records that changed no row, by table and reason (conflict, stale_version, tombstone, collapsed).",
                &["table", "reason"],
            )?,
            rows_deleted: counter_vec(
                "sluice_rows_deleted_total",
                "Rows deleted by tombstones.",
                &["table"],
            )?,
            dead_letters: counter_vec(
                "sluice_dead_letters_total",
                "Records written to the dead-letter table, by reason (decode, refused).",
                &["table", "reason"],
            )?,
            batch_commit_seconds: histogram(
                "sluice_batch_commit_seconds",
                "Time to write and commit one batch transaction.",
                latency_buckets()?,
            )?,
            batch_rows: histogram(
                "sluice_batch_rows",
                "Records per committed batch.",
                prometheus::exponential_buckets(1.0, 4.0, 10)?,
            )?,
            batch_bytes: histogram(
                "sluice_batch_bytes",
                "Record bytes per committed batch.",
                prometheus::exponential_buckets(256.0, 4.0, 10)?,
            )?,
            pg_errors: counter_vec(
                "sluice_pg_errors_total",
                "Postgres errors by SQLSTATE class (\"connection\" when the connection failed).",
                &["class"],
            )?,
            retries: counter("sluice_retries_total", "Batch attempts retried after a retryable error.")?,
            fence_rejections: counter(
                "sluice_fence_rejections_total",
                "Commits refused by the offset fence because another worker owns the partition.",
            )?,
            ambiguous_commits: counter(
                "sluice_ambiguous_commits_total",
                "Commits whose reply was lost and that the offset row proved applied.",
            )?,
            rewinds: counter(
                "sluice_offset_rewinds_total",
                "Times a partition was re-read because Postgres held an older offset than expected.",
            )?,
            rebalances: counter_vec(
                "sluice_rebalances_total",
                "Rebalance events by kind (assign, revoke, error).",
                &["kind"],
            )?,
            assigned_partitions: reg(
                registry,
                IntGauge::new("sluice_assigned_partitions", "Partitions this replica owns.")?,
            )?,
            partitions_halted: reg(
                registry,
                IntGauge::new(
                    "sluice_partitions_halted",
                    "Partitions halted before a bad record (on_error: stop).",
                )?,
            )?,
            committed_offset: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "sluice_partition_committed_offset",
                        "Next offset committed to Postgres, per partition.",
                    ),
                    tp,
                )?,
            )?,
            lag_records: reg(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "sluice_partition_lag_records",
                        "High watermark minus the next offset committed to Postgres, per partition.",
                    ),
                    tp,
                )?,
            )?,
            lag_seconds: reg(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "sluice_partition_lag_seconds",
                        "Now minus the timestamp of the last record committed (0 when caught up).",
                    ),
                    tp,
                )?,
            )?,
            throttle_wait_seconds: reg(
                registry,
                Counter::new(
                    "sluice_throttle_wait_seconds_total",
                    "Time partition workers waited for the rate limiter.",
                )?,
            )?,
            throttle_rate: reg(
                registry,
                Gauge::new(
                    "sluice_throttle_rate_rows_per_second",
                    "The effective write rate limit (+Inf when no throttle is configured).",
                )?,
            )?,
            partition_rows: counter_vec(
                "sluice_partition_rows_total",
                "Records committed per partition (rows, skipped and dead letters).",
                tp,
            )?,
            kafka_errors: counter(
                "sluice_kafka_errors_total",
                "Errors reported by the Kafka client while consuming.",
            )?,
            kafka_brokers_up: reg(
                registry,
                IntGauge::new(
                    "sluice_kafka_brokers_up",
                    "Kafka brokers the consumer has a working connection to, from librdkafka's statistics (every 2 s).",
                )?,
            )?,
            abandoned_records: counter(
                "sluice_abandoned_records_total",
                "Records fetched but not committed when their worker stopped (revoke, shutdown); the next owner reads them again.",
            )?,
            reclaims: counter(
                "sluice_partition_reclaims_total",
                "Partitions claimed again after a fence rejection because the consumer group still assigned them here (the other claim was stale).",
            )?,
            worker_panics: counter(
                "sluice_worker_panics_total",
                "Partition workers that panicked; each stops the replica with an error (a bug: please report it).",
            )?,
            offset_gap_records: counter_vec(
                "sluice_offset_gap_records_total",
                "Offsets jumped over because the stored offset was outside the log (below its start: retention deleted records sluice never wrote).",
                &["topic"],
            )?,
            ready: reg(
                registry,
                IntGauge::new(
                    "sluice_ready",
                    "1 while /readyz answers 200 (the group is joined, Postgres and a Kafka broker reachable, no partition halted), else 0; set at each scrape.",
                )?,
            )?,
            throttle_min_rate: reg(
                registry,
                Gauge::new(
                    "sluice_throttle_min_rows_per_second",
                    "The adaptive throttle's floor (throttle.adaptive.min_rows_per_second; 0 without an adaptive throttle).",
                )?,
            )?,
            poison_storms: counter(
                "sluice_poison_storms_total",
                "Partitions halted by the poison-storm breaker: more than max_dead_letter_ratio of their recent records were dead-lettered for one reason.",
            )?,
            offset_out_of_range: counter_vec(
                "sluice_offset_out_of_range_total",
                "Times a partition's stored offset did not fit the log, by where it was (ahead_of_end, behind_start) and what sluice did (halted, moved).",
                &["topic", "edge", "action"],
            )?,
            pool: PoolMetrics::register(registry)?,
            phases: TransactionPhases::register(registry)?,
        };
        // Until a throttle says otherwise, the limit is infinite.
        metrics.throttle_rate.set(f64::INFINITY);
        Ok(metrics)
    }
}
