//! `kafka.librdkafka`: the raw settings sluice owns or has typed fields
//! for, refused with the fix.

use super::super::{KafkaConfig, Problem};

/// librdkafka settings sluice sets itself, with the fix to suggest.
const OWNED_LIBRDKAFKA_KEYS: &[(&str, &str)] = &[
    (
        "bootstrap.servers",
        "sluice sets it; use kafka.brokers instead",
    ),
    (
        "metadata.broker.list",
        "sluice sets it; use kafka.brokers instead",
    ),
    ("group.id", "sluice sets it; use kafka.group_id instead"),
    (
        "enable.auto.commit",
        "sluice stores offsets in Postgres, in the same transaction as the rows; remove it",
    ),
    (
        "enable.auto.offset.store",
        "sluice stores offsets in Postgres, in the same transaction as the rows; remove it",
    ),
    (
        "auto.offset.reset",
        "sluice sets it; use kafka.start_from (where a new partition starts) and kafka.on_offset_out_of_range (a stored offset outside the log) instead",
    ),
    // Security settings have typed fields (kafka.security), which validate
    // them and keep their secrets out of logs.
    ("security.protocol", "use kafka.security.protocol instead"),
    ("sasl.mechanism", "use kafka.security.sasl.mechanism instead"),
    ("sasl.mechanisms", "use kafka.security.sasl.mechanism instead"),
    ("sasl.username", "use kafka.security.sasl.username instead"),
    (
        "sasl.password",
        "use kafka.security.sasl.password instead (as \"${KAFKA_PASSWORD}\")",
    ),
    (
        "sasl.oauthbearer.method",
        "use kafka.security.sasl.oauthbearer instead (sluice sets method oidc)",
    ),
    (
        "sasl.oauthbearer.client.id",
        "use kafka.security.sasl.oauthbearer.client_id instead",
    ),
    (
        "sasl.oauthbearer.client.secret",
        "use kafka.security.sasl.oauthbearer.client_secret instead",
    ),
    (
        "sasl.oauthbearer.token.endpoint.url",
        "use kafka.security.sasl.oauthbearer.token_endpoint_url instead",
    ),
    (
        "sasl.oauthbearer.scope",
        "use kafka.security.sasl.oauthbearer.scope instead",
    ),
    (
        "sasl.oauthbearer.extensions",
        "use kafka.security.sasl.oauthbearer.extensions instead",
    ),
    ("ssl.ca.location", "use kafka.security.ssl.ca_file instead"),
    (
        "ssl.certificate.location",
        "use kafka.security.ssl.cert_file instead",
    ),
    ("ssl.key.location", "use kafka.security.ssl.key_file instead"),
    ("ssl.key.password", "use kafka.security.ssl.key_password instead"),
    (
        "ssl.endpoint.identification.algorithm",
        "use kafka.security.ssl.verify_hostname instead",
    ),
    // read_uncommitted would write records of aborted Kafka transactions.
    (
        "isolation.level",
        "sluice always reads read_committed (records of aborted transactions are never written); remove it",
    ),
];

/// Every raw setting that sluice sets itself, or that conflicts with a
/// typed field.
pub(super) fn check(kafka: &KafkaConfig, problems: &mut Vec<Problem>) {
    for key in kafka.librdkafka.keys() {
        if let Some((_, fix)) = OWNED_LIBRDKAFKA_KEYS.iter().find(|(owned, _)| owned == key) {
            problems.push(Problem::new(
                format!("kafka.librdkafka.{key}"),
                format!("cannot be set here: {fix}"),
            ));
        }
    }
    let ssl = kafka.security.as_ref().and_then(|s| s.ssl.as_ref());
    // Inline PEM and keystores are librdkafka-only alternatives to the typed
    // files; both at once would leave which one wins to librdkafka.
    for (key, typed, set) in [
        (
            "ssl.ca.pem",
            "ca_file",
            ssl.is_some_and(|s| s.ca_file.is_some()),
        ),
        (
            "ssl.certificate.pem",
            "cert_file",
            ssl.is_some_and(|s| s.cert_file.is_some()),
        ),
        (
            "ssl.keystore.location",
            "cert_file",
            ssl.is_some_and(|s| s.cert_file.is_some()),
        ),
        (
            "ssl.key.pem",
            "key_file",
            ssl.is_some_and(|s| s.key_file.is_some()),
        ),
    ] {
        if set && kafka.librdkafka.contains_key(key) {
            problems.push(Problem::new(
                format!("kafka.librdkafka.{key}"),
                format!("conflicts with kafka.security.ssl.{typed}; set one of them"),
            ));
        }
    }
}
