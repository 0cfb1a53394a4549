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

/// Brokers with a working connection, by address: the bootstrap, learned
/// and logical ones (the group coordinator has a connection of its own,
/// and is all a replica that owns no partition may keep open under
/// librdkafka's sparse connections); a bootstrap entry, the learned broker
/// behind it and the coordinator on it are one broker. librdkafka's
/// internal broker is not one.
pub fn brokers_up(statistics: &Statistics) -> usize {
    statistics
        .brokers
        .values()
        .filter(|b| b.source != "internal" && b.state == "UP" && !b.nodename.is_empty())
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
