//! The `kafka` section: where to consume from, where a partition starts,
//! raw librdkafka settings and (in `kafka_security`) how to connect.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults::*;
use super::print;
use super::{units, KafkaSecurity, OffsetOutOfRange};

/// The `kafka` section.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated "host:port" pairs. Required.
    pub brokers: String,
    /// The consumer group id; replicas sharing it split the partitions. Required.
    pub group_id: String,
    /// Where to start in a partition for which Postgres holds no offset yet:
    /// `earliest`, `latest` or `committed` (the group's offset committed in
    /// Kafka, falling back to earliest). Default: `earliest`.
    #[serde(default = "default_start_from")]
    pub start_from: StartFrom,
    /// How long a rebalance waits for the workers of revoked partitions to
    /// finish their current batch (1s to 10m); also how long a worker
    /// fenced out by another claim waits for its revoke before it claims a
    /// partition the group still assigns to it again. Default: `10s`.
    #[serde(
        default = "default_revoke_timeout",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub revoke_timeout: Duration,
    /// How sluice authenticates to the brokers and encrypts the connection:
    /// TLS, SASL (PLAIN, SCRAM, OAUTHBEARER, GSSAPI). Default: absent
    /// (plaintext, no authentication).
    #[serde(default)]
    pub security: Option<KafkaSecurity>,
    /// Raw librdkafka settings passed through to the consumer (values may be
    /// strings, numbers or booleans). Keys sluice owns are rejected. Default:
    /// empty.
    #[serde(
        default,
        deserialize_with = "units::string_map",
        serialize_with = "print::redacted_map"
    )]
    pub librdkafka: BTreeMap<String, String>,
    /// What a partition does when its offset stored in Postgres does not
    /// fit the log. `halt`: hold it, write nothing and report it (`/readyz`
    /// 503, an ERROR, `sluice_partitions_halted`, `sluice check`) until an
    /// operator moves the stored offset. `earliest`: go on from the log
    /// start, counting the skipped offsets in
    /// `sluice_offset_gap_records_total`. Absent: the stored offset is
    /// ahead of the log end (a recreated topic, a truncated log, another
    /// cluster) → `halt`; behind the log start (retention deleted records
    /// sluice never wrote) → `earliest`, with a WARN. Routes may override
    /// it. Default: absent.
    #[serde(default)]
    pub on_offset_out_of_range: Option<OffsetOutOfRange>,
    /// `/readyz` reports not ready once no broker has been connected this
    /// long (librdkafka keeps reconnecting meanwhile, and the workers keep
    /// their partitions), so a broker restart does not flap readiness.
    /// Default: `30s`.
    #[serde(
        default = "default_unready_after",
        deserialize_with = "units::duration",
        serialize_with = "print::duration"
    )]
    pub unready_after: Duration,
}

/// Where to start consuming a partition that has no offset in Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest message still in the partition.
    #[default]
    Earliest,
    /// Only messages produced after sluice starts.
    Latest,
    /// The offset the consumer group committed in Kafka (earliest if none).
    Committed,
}

/// Raw settings whose values may be credentials (a keystore password, an
/// inline PEM key, an OIDC secret): never printed, whatever the key's case.
pub(crate) fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "pem",
        "jaas",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Debug without credentials: `security` redacts its own secrets, raw
/// settings that may hold one print as ***.
impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw: BTreeMap<&str, &str> = self
            .librdkafka
            .iter()
            .map(|(k, v)| {
                let shown = if is_sensitive_key(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("start_from", &self.start_from)
            .field("revoke_timeout", &self.revoke_timeout)
            .field("security", &self.security)
            .field("librdkafka", &raw)
            .field("on_offset_out_of_range", &self.on_offset_out_of_range)
            .field("unready_after", &self.unready_after)
            .finish()
    }
}
