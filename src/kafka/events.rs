//! What librdkafka reports besides records and rebalances: statistics
//! (watermarks for the lag metrics, broker connections for readiness),
//! global errors and its own log lines, the repeated ones rate-limited.

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use tracing::{debug, error, info, warn};

use super::{reachability, SinkContext};

impl ClientContext for SinkContext {
    /// librdkafka's statistics carry every partition's watermarks, which
    /// the lag metrics need even when a partition is not moving, and every
    /// broker connection's state (readiness).
    fn stats(&self, statistics: Statistics) {
        reachability::observe(&self.shared, reachability::brokers_up(&statistics));
        self.shared
            .set_watermarks(statistics.topics.into_iter().flat_map(|(topic, t)| {
                t.partitions
                    .into_values()
                    .filter(|p| p.partition >= 0)
                    .map(move |p| ((topic.clone(), p.partition), (p.lo_offset, p.hi_offset)))
            }));
    }

    /// Errors librdkafka recovers from by itself (it keeps reconnecting):
    /// rate-limited per kind (kafka::repeats); "all brokers down" also
    /// starts the outage readiness counts from.
    fn error(&self, error: KafkaError, reason: &str) {
        use RDKafkaErrorCode::*;
        let code = error.rdkafka_error_code();
        if code == Some(AllBrokersDown) {
            reachability::all_down(&self.shared);
        }
        let Some(held_back) = self.shared.kafka_repeats.admit(&format!("client:{code:?}")) else {
            return;
        };
        match code {
            Some(BrokerTransportFailure | AllBrokersDown | RequestTimedOut | Resolve) => {
                warn!(target: "librdkafka", held_back, "{error}: {reason}")
            }
            _ => error!(target: "librdkafka", held_back, "{error}: {reason}"),
        }
    }

    /// librdkafka's own log lines; warnings and errors repeat per broker
    /// and reconnect attempt during an outage, so those are rate-limited
    /// per facility (kafka::repeats).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        use RDKafkaLogLevel::*;
        match level {
            Emerg | Alert | Critical | Error | Warning => {
                let Some(held_back) = self.shared.kafka_repeats.admit(&format!("log:{fac}")) else {
                    return;
                };
                match level {
                    Warning => warn!(target: "librdkafka", fac, held_back, "{message}"),
                    _ => error!(target: "librdkafka", fac, held_back, "{message}"),
                }
            }
            Notice | Info => info!(target: "librdkafka", fac, "{message}"),
            Debug => debug!(target: "librdkafka", fac, "{message}"),
        }
    }
}
