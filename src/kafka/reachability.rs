//! Whether sluice reaches any Kafka broker. librdkafka's statistics (every
//! `statistics.interval.ms`) list each broker connection and its state; an
//! "all brokers are down" error marks an outage's start at once, between
//! two statistics. While no broker is reachable librdkafka keeps
//! reconnecting and the workers keep their partitions (and wait for
//! records); `/readyz` turns 503 once that lasted `kafka.unready_after`.

use std::collections::HashSet;

use rdkafka::statistics::Statistics;
use tracing::{info, warn};

use crate::pipeline::Shared;

/// Brokers with a working connection: the bootstrap and learned ones, by
/// address (a bootstrap entry and the learned broker behind it are one).
/// librdkafka's internal broker and the logical group coordinator (which
/// borrows a real broker's connection) are not brokers.
pub fn brokers_up(statistics: &Statistics) -> usize {
    statistics
        .brokers
        .values()
        .filter(|b| matches!(b.source.as_str(), "configured" | "learned") && b.state == "UP")
        .map(|b| b.nodename.as_str())
        .collect::<HashSet<_>>()
        .len()
}

/// What a statistics report says: `up` brokers connected.
pub fn observe(shared: &Shared, up: usize) {
    shared
        .metrics
        .kafka_brokers_up
        .set(i64::try_from(up).unwrap_or(i64::MAX));
    note(shared, up > 0);
}

/// librdkafka reported that every broker connection is down.
pub fn all_down(shared: &Shared) {
    shared.metrics.kafka_brokers_up.set(0);
    note(shared, false);
}

fn note(shared: &Shared, reachable: bool) {
    if reachable != shared.kafka.reachable() {
        match reachable {
            true => info!("a Kafka broker is reachable again"),
            false => warn!(
                unready_after = ?shared.kafka.unready_after(),
                "no Kafka broker is reachable; librdkafka keeps reconnecting, the workers keep their partitions while the group session lasts"
            ),
        }
    }
    shared.kafka.set(reachable);
}
