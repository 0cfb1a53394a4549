//! The Kafka side: client settings and the consumer group's rebalances.

pub mod burst;
mod events;
pub mod log;
pub mod probe;
pub mod reachability;
mod rebalance;
pub mod repeats;
pub mod security;

use rdkafka::consumer::stream_consumer::{StreamConsumer, StreamPartitionQueue};
use rdkafka::{ClientConfig, Offset};

use crate::config::Config;

pub use rebalance::SinkContext;

pub type SinkConsumer = StreamConsumer<SinkContext>;
pub type PartitionQueue = StreamPartitionQueue<SinkContext>;

/// Where a partition is read from: its offset in Postgres. A claimed
/// partition always has one (pipeline::start stores `start_from`'s answer
/// at the first claim); `None` is a claim lost meanwhile, whose worker is
/// fenced out before it writes anything, so any position does.
pub fn start_offset(stored: Option<i64>) -> Offset {
    stored.map_or(Offset::Beginning, Offset::Offset)
}

/// How many records librdkafka keeps fetched ahead per partition
/// (`queued.min.messages`): two batches, at least 10,000. With the floor
/// at 1,000 the drain benchmark's workers waited on fetches at small
/// batches: 16 partitions, `max_rows: 1000`, 500,000 records went at
/// 172,000 records/s with 2,000 queued, 216,000 with 5,000, 227,000 with
/// 10,000 (docs/performance.md). At `max_rows: 5000` ten batches gained
/// nothing measurable over two, and each queued record costs librdkafka
/// about 240 bytes besides its own (a heap profile), so the count is not
/// raised further. The bytes cap, `queued.max.messages.kbytes`, applies as
/// well.
fn prefetch_messages(max_rows: usize) -> usize {
    max_rows.saturating_mul(2).max(10_000)
}

/// librdkafka settings: sluice's defaults, then the user's raw settings
/// (which win), then the settings sluice's correctness depends on.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut cc = ClientConfig::new();
    // Each partition has its own queue, and librdkafka's prefetch limits
    // apply per partition then: keep them near one batch so memory is
    // bounded by partitions x batch size, not by the backlog. A lower queue
    // size needs a lower fetch.queue.backoff.ms or fetching stalls
    // (librdkafka #3662). The 256 KiB floor keeps a replica with small
    // batches and many partitions small (measured: 64 partitions took
    // 144 MiB with a 1 MiB floor, 77 MiB with 256 KiB) while one queue
    // still holds a full fetch response.
    let per_partition_kib = (config.batch.max_bytes.bytes() * 2 / 1024).clamp(256, 65_536);
    for (k, v) in [
        (
            "partition.assignment.strategy",
            "cooperative-sticky".to_string(),
        ),
        ("queued.max.messages.kbytes", per_partition_kib.to_string()),
        (
            "queued.min.messages",
            prefetch_messages(config.batch.max_rows).to_string(),
        ),
        ("fetch.queue.backoff.ms", "50".to_string()),
        // A broker back after an outage is reconnected to within 2 s, not
        // librdkafka's 10 s (the backoff grows to the maximum while the
        // broker is away); one connection attempt per broker every 2 s
        // costs nothing.
        ("reconnect.backoff.max.ms", "2000".to_string()),
        ("auto.commit.interval.ms", "5000".to_string()),
        // Watermarks for the lag metrics arrive with the statistics.
        ("statistics.interval.ms", "2000".to_string()),
    ] {
        cc.set(k, v);
    }
    for (k, v) in &config.kafka.librdkafka {
        cc.set(k, v);
    }
    if let Some(security) = &config.kafka.security {
        for (k, v) in security::settings(security) {
            cc.set(k, v);
        }
    }
    cc.set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        // Offsets live in Postgres; Kafka gets them afterwards, advisory.
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        // Records of aborted Kafka transactions must never be written.
        .set("isolation.level", "read_committed")
        // A fetch outside the log must never move silently: librdkafka
        // reports it to the partition's worker instead, which applies
        // `on_offset_out_of_range` (pipeline::edges). Partitions are always
        // assigned a concrete stored offset, so nothing else resets.
        .set("auto.offset.reset", "error");
    cc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefetch_holds_two_batches_and_at_least_ten_thousand_records() {
        assert_eq!(prefetch_messages(1), 10_000);
        assert_eq!(prefetch_messages(1000), 10_000);
        assert_eq!(prefetch_messages(5000), 10_000);
        assert_eq!(prefetch_messages(20_000), 40_000);
        assert_eq!(prefetch_messages(usize::MAX), usize::MAX);
        let yaml = "kafka:\n  brokers: b:9092\n  group_id: g\npostgres:\n  url: postgres://h/d\n\
                    batch:\n  max_rows: 8000\nroutes:\n  - topic: t\n    table: public.t\n    columns:\n      id: /id\n";
        let config = Config::from_yaml(yaml, |_| None).expect("config");
        let cc = client_config(&config);
        assert_eq!(cc.get("queued.min.messages"), Some("16000"));
        // The bytes still cap the queue: twice batch.max_bytes (4 MiB).
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("8192"));
    }
}
