//! Prometheus metrics. One `Metrics` value is registered on a registry the
//! application creates and passes down; nothing uses the global registry.

use prometheus::{
    Counter, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

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
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        fn reg<T: prometheus::core::Collector + Clone + 'static>(
            registry: &Registry,
            c: T,
        ) -> Result<T, prometheus::Error> {
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        }
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
                prometheus::exponential_buckets(0.001, 2.0, 16)?,
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
        };
        // Until a throttle says otherwise, the limit is infinite.
        metrics.throttle_rate.set(f64::INFINITY);
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric sluice exports, with histograms' series suffixes.
    fn exported() -> Vec<String> {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).expect("register");
        // Families with labels appear once a label set is used.
        let m = &metrics;
        m.rows_written.with_label_values(&["t", "append"]).inc();
        m.rows_skipped.with_label_values(&["t", "conflict"]).inc();
        m.rows_deleted.with_label_values(&["t"]).inc();
        m.dead_letters.with_label_values(&["t", "decode"]).inc();
        m.pg_errors.with_label_values(&["08"]).inc();
        m.rebalances.with_label_values(&["assign"]).inc();
        m.partition_rows.with_label_values(&["t", "0"]).inc();
        m.committed_offset.with_label_values(&["t", "0"]).set(1);
        m.lag_records.with_label_values(&["t", "0"]).set(1);
        m.lag_seconds.with_label_values(&["t", "0"]).set(1.0);
        m.offset_gap_records.with_label_values(&["t"]).inc();
        m.offset_out_of_range
            .with_label_values(&["t", "behind_start", "moved"])
            .inc();
        let mut names = Vec::new();
        for family in registry.gather() {
            let name = family.name().to_string();
            if family.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")));
            }
            names.push(name);
        }
        names
    }

    fn mentioned(text: &str) -> Vec<String> {
        let mut found: Vec<String> = text
            .match_indices("sluice_")
            .map(|(i, _)| {
                text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect()
            })
            .collect();
        found.sort();
        found.dedup();
        found
    }

    #[test]
    fn the_dashboard_uses_only_exported_metrics() {
        let exported = exported();
        for name in mentioned(include_str!("../docs/grafana-dashboard.json")) {
            assert!(
                exported.contains(&name),
                "dashboard uses {name}, which sluice does not export"
            );
        }
    }

    #[test]
    fn operations_doc_lists_every_metric_and_nothing_else() {
        let exported = exported();
        let doc = mentioned(include_str!("../docs/operations.md"));
        for name in &exported {
            let base = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                doc.iter().any(|d| d == base),
                "docs/operations.md does not describe {base}"
            );
        }
        for name in doc {
            assert!(
                exported.contains(&name),
                "docs/operations.md names {name}, which sluice does not export"
            );
        }
    }

    #[test]
    fn counters_end_in_total() {
        let registry = Registry::new();
        Metrics::register(&registry).expect("register");
        for family in registry.gather() {
            if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
                assert!(family.name().ends_with("_total"), "{}", family.name());
            }
        }
    }
}
