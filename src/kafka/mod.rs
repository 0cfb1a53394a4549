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
/// (`queued.min.messages`): one batch, at least 5,000. Before batch intake
/// (`kafka::burst`) workers waited on fetches with less than two batches
/// queued (16 partitions, `max_rows: 1000`, 500,000 records: 172,000
/// records/s with 2,000 queued, 227,000 with 10,000). Since then, with
/// sluice in its own process reading the mock cluster (1,000,000 records,
/// 32 partitions; docs/performance.md), one batch drains as fast as two
/// and takes a third less memory: at `max_rows: 5000` 296,000 against
/// 298,000 records/s (medians of 3, alternated) and 147–150 MB peak RSS
/// against 222–228 MB; at `max_rows: 1000` 5,000 queued gave 208,000–
/// 216,000 against 210,000–219,000 with 10,000, 108–111 MB against 177 MB.
/// Less than a batch was slower in one run of two (250,000 with 3,000 at
/// `max_rows: 5000`), so the floor stays above the smaller batch sizes.
/// Each queued record costs librdkafka about 240 bytes besides its own (a
/// heap profile). The bytes cap, `queued.max.messages.kbytes`, applies as
/// well.
fn prefetch_messages(max_rows: usize) -> usize {
    max_rows.max(5_000)
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
    fn the_prefetch_holds_one_batch_and_at_least_five_thousand_records() {
        assert_eq!(prefetch_messages(1), 5_000);
        assert_eq!(prefetch_messages(1000), 5_000);
        assert_eq!(prefetch_messages(5000), 5_000);
        assert_eq!(prefetch_messages(20_000), 20_000);
        assert_eq!(prefetch_messages(usize::MAX), usize::MAX);
        let yaml = "kafka:\n  brokers: b:9092\n  group_id: g\npostgres:\n  url: postgres://h/d\n\
                    batch:\n  max_rows: 8000\nroutes:\n  - topic: t\n    table: public.t\n    columns:\n      id: /id\n";
        let config = Config::from_yaml(yaml, |_| None).expect("config");
        let cc = client_config(&config);
        assert_eq!(cc.get("queued.min.messages"), Some("8000"));
        // The bytes still cap the queue: twice batch.max_bytes (4 MiB).
        assert_eq!(cc.get("queued.max.messages.kbytes"), Some("8192"));
    }
}
