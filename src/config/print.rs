//! `sluice config print`: the effective configuration, every default filled
//! in, as YAML that reads back as the same configuration, with every secret
//! shown as `***` (the password in `postgres.url`, `Secret` fields, raw
//! librdkafka settings that may hold credentials).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::kafka::is_sensitive_key;
use super::{redact_url, ByteSize, ColumnSource, Config, Secret};

/// The configuration as YAML, secrets redacted.
pub fn effective_yaml(config: &Config) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(config)
}

/// `serialize_with` for durations: the largest unit that divides the
/// duration exactly ("250ms", "30s", "10m", "1h"), in the grammar the
/// parser reads.
pub(super) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&duration_text(*d))
}

/// Whole milliseconds: the grammar's smallest unit, and every duration
/// sluice reads is one.
fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0ms".into();
    }
    for (unit, factor) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1_000)] {
        if ms % factor == 0 {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

/// `serialize_with` for the raw librdkafka map: values of keys that may hold
/// credentials are `***`.
pub(super) fn redacted_map<S: Serializer>(
    map: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(map.iter().map(|(k, v)| {
        let v = if is_sensitive_key(k) {
            "***"
        } else {
            v.as_str()
        };
        (k, v)
    }))
}

/// `serialize_with` for the Postgres connection string: the password (in
/// the user info, `password=`, `?password=`) is `***`, the rest is kept.
pub(super) fn redacted_url<S: Serializer>(url: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&redact_url(url.expose()))
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for ColumnSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped example, its secrets from the environment: the print
    /// shows none of them, reads back, and prints the same again.
    #[test]
    fn every_example_prints_without_secrets_and_reads_back() {
        const SECRET: &str = "s3cr3t-from-env";
        for (path, text) in super::super::tests::example_files() {
            let env = |name: &str| {
                let secret = ["PASSWORD", "SECRET"].iter().any(|w| name.contains(w));
                Some(if secret { SECRET } else { "x" }.to_owned())
            };
            let config = Config::from_yaml(&text, env).unwrap();
            let printed = effective_yaml(&config).unwrap();
            assert!(!printed.contains(SECRET), "{}:\n{printed}", path.display());
            let again = Config::from_yaml(&printed, |_| None).unwrap_or_else(|e| {
                panic!("{} does not read back: {e}\n{printed}", path.display())
            });
            assert_eq!(
                effective_yaml(&again).unwrap(),
                printed,
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let yaml = "kafka: { brokers: \"k:9092\", group_id: g }\n\
                    postgres: { url: \"postgres://u:pw@db/app\" }\n\
                    routes: [{ topic: t, table: t, columns: { c: /c } }]\n";
        let printed = effective_yaml(&Config::from_yaml(yaml, |_| None).unwrap()).unwrap();
        for line in [
            "url: postgres://u:***@db/app",
            "pool_size: 8",
            "statement_timeout: 1m",
            "linger: 50ms",
            "max_bytes: 4MiB",
            "shutdown_grace: 25s",
            "start_from: earliest",
            "write_method: copy",
            "on_error: dead_letter",
        ] {
            assert!(printed.contains(line), "missing {line:?} in\n{printed}");
        }
    }

    #[test]
    fn durations_print_in_the_largest_exact_unit_and_read_back() {
        for (d, text) in [
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::ZERO, "0ms"),
        ] {
            assert_eq!(duration_text(d), text);
            assert_eq!(super::super::parse_duration(text).ok(), Some(d), "{text}");
        }
    }
}
