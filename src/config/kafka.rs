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
    /// Bootstrap brokers, comma-separated "host:port" pairs; credentials go
    /// under `security.sasl`, not in the address. Required.
    pub brokers: String,
    /// The consumer group id; replicas sharing it split the partitions. Required.
    pub group_id: String,
    /// Where to start in a partition for which Postgres holds no offset yet:
    /// `earliest`, `latest`, `committed` (the group's offset committed in
    /// Kafka, falling back to earliest) or `timestamp:<RFC 3339>` (the first
    /// record at or after that time, by the brokers' time index; the log end
    /// when none is). Default: `earliest`.
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
/// Written `earliest`, `latest`, `committed` or `timestamp:<RFC 3339>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(into = "String")]
pub enum StartFrom {
    /// The oldest message still in the partition.
    #[default]
    Earliest,
    /// Only messages produced after sluice starts.
    Latest,
    /// The offset the consumer group committed in Kafka (earliest if none).
    Committed,
    /// The first message whose timestamp is at or after this time (epoch
    /// milliseconds), by the brokers' time index (the log end if none is).
    Timestamp(i64),
}

impl TryFrom<String> for StartFrom {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "earliest" => Ok(StartFrom::Earliest),
            "latest" => Ok(StartFrom::Latest),
            "committed" => Ok(StartFrom::Committed),
            other => match other.strip_prefix("timestamp:") {
                Some(time) => parse_epoch_ms(time)
                    .map(StartFrom::Timestamp)
                    .map_err(|e| format!("{other:?}: {e}")),
                None => Err(format!(
                    "{other:?} is not a start: write earliest, latest, committed or \
                     timestamp:<RFC 3339 time> (timestamp:2026-12-01T00:00:00Z)"
                )),
            },
        }
    }
}

// By hand rather than `try_from = "String"`: an error raised inside the
// scalar's visitor carries the field's path (kafka.start_from), while one
// raised after the string was read is reported at the enclosing map.
impl<'de> Deserialize<'de> for StartFrom {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StartFrom;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("earliest, latest, committed or timestamp:<RFC 3339 time>")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<StartFrom, E> {
                StartFrom::try_from(text.to_owned()).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl From<StartFrom> for String {
    fn from(start: StartFrom) -> String {
        match start {
            StartFrom::Earliest => "earliest".into(),
            StartFrom::Latest => "latest".into(),
            StartFrom::Committed => "committed".into(),
            StartFrom::Timestamp(ms) => format!("timestamp:{}", format_epoch_ms(ms)),
        }
    }
}

/// An RFC 3339 time as epoch milliseconds (Kafka's timestamps).
pub fn parse_epoch_ms(time: &str) -> Result<i64, String> {
    let at = humantime::parse_rfc3339_weak(time)
        .map_err(|e| format!("not an RFC 3339 time ({e}); write it like 2026-12-01T00:00:00Z"))?;
    let since = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "a time before 1970 has no Kafka timestamp".to_string())?;
    i64::try_from(since.as_millis()).map_err(|_| "a time too far ahead".to_string())
}

/// Epoch milliseconds as an RFC 3339 time (UTC, milliseconds).
pub fn format_epoch_ms(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_millis(at).to_string()
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
