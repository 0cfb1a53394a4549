//! The exported names: counters end in `_total`, and the dashboard and
//! docs/operations.md name exactly what is exported.

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
    for name in mentioned(include_str!("../../docs/grafana-dashboard.json")) {
        assert!(
            exported.contains(&name),
            "dashboard uses {name}, which sluice does not export"
        );
    }
}

#[test]
fn operations_doc_lists_every_metric_and_nothing_else() {
    let exported = exported();
    let doc = mentioned(include_str!("../../docs/operations.md"));
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
