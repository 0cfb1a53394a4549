//! What `sluice offsets set --to` means, and whether a route absorbs the
//! records a move makes sluice read again.

use std::time::Duration;

use crate::config::{format_epoch_ms, parse_epoch_ms, ColumnSource, Config, Mode, RouteConfig};

/// Where `--to` moves the stored offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The log start of the connected cluster.
    Earliest,
    /// The log end of the connected cluster: nothing there now is written.
    Latest,
    /// This offset (within the log).
    Offset(i64),
    /// The first record at or after this Kafka time (epoch ms).
    Timestamp(i64),
    /// The same place in another cluster's copy of the log: the first
    /// record at or after the last written record's timestamp minus the
    /// overlap.
    Translate,
}

impl Target {
    /// `earliest`, `latest`, `offset:N`, `timestamp:<RFC 3339>` or
    /// `translate`.
    pub fn parse(text: &str) -> Result<Target, String> {
        match text {
            "earliest" => return Ok(Target::Earliest),
            "latest" => return Ok(Target::Latest),
            "translate" => return Ok(Target::Translate),
            _ => {}
        }
        if let Some(n) = text.strip_prefix("offset:") {
            return match n.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Target::Offset(n)),
                _ => Err(format!(
                    "--to {text}: an offset is a whole number from 0 (offset:1234)"
                )),
            };
        }
        if let Some(time) = text.strip_prefix("timestamp:") {
            return parse_epoch_ms(time)
                .map(Target::Timestamp)
                .map_err(|e| format!("--to {text}: {e}"));
        }
        Err(format!(
            "--to {text}: write earliest, latest, offset:<N>, \
             timestamp:<RFC 3339 time> (timestamp:2026-12-01T00:00:00Z) or translate"
        ))
    }

    /// Whether the move may make sluice write a record it already wrote:
    /// backwards on the same log (earliest, an offset or a time), or any
    /// translation (the overlap is read again by design).
    pub fn rereads(self) -> bool {
        !matches!(self, Target::Latest)
    }

    pub fn describe(self) -> String {
        match self {
            Target::Earliest => "earliest".into(),
            Target::Latest => "latest".into(),
            Target::Offset(n) => format!("offset:{n}"),
            Target::Timestamp(ms) => format!("timestamp:{}", format_epoch_ms(ms)),
            Target::Translate => "translate".into(),
        }
    }
}

/// Why a route would write a record read twice as a second row, or
/// `None` when it absorbs it: an upsert (the row is written again with
/// the same values), or an append keyed by columns from the record (an
/// event id), which the key's unique index turns into a no-op. A key made
/// of, or containing, Kafka coordinates does not absorb: the same record
/// has other coordinates in another cluster's copy of the log, and an
/// earlier offset of this log is a new key.
pub fn duplicates_risk(route: &RouteConfig) -> Option<String> {
    if route.mode == Mode::Upsert {
        return None;
    }
    let name = route.route_name();
    let Some(key) = &route.key else {
        return Some(format!(
            "route {name} appends rows keyed by their Kafka coordinates (no `key`): \
             a record read again is a second row"
        ));
    };
    let coordinate = key.iter().find(|column| {
        matches!(
            route.columns.get(column.as_str()),
            Some(ColumnSource::Topic | ColumnSource::Partition | ColumnSource::Offset)
        )
    });
    coordinate.map(|column| {
        format!(
            "route {name} appends rows keyed by {column}, a Kafka coordinate: \
             a record read again (at another offset) is a second row"
        )
    })
}

/// The routes of `topics` that would duplicate, with why.
pub fn risks(config: &Config, topics: &[String]) -> Vec<String> {
    config
        .routes
        .iter()
        .filter(|r| topics.contains(&r.topic))
        .filter_map(duplicates_risk)
        .collect()
}

/// `--overlap`: how far before the last written record's time a
/// translation starts, for timestamps that are not in offset order
/// (several producers, clock skew).
pub const DEFAULT_OVERLAP: &str = "1m";

pub fn overlap_ms(overlap: Duration) -> i64 {
    i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_that_absorb_a_record_read_again() {
        let config = Config::from_yaml(
            r#"
kafka: {brokers: "localhost:9092", group_id: g}
postgres: {url: "postgres://localhost/db"}
routes:
  - {topic: t, table: by_coordinates, columns: {v: /v}}
  - {topic: t, table: by_offset, key: [o], columns: {o: $offset, v: /v}}
  - {topic: t, table: by_id, key: [id], columns: {id: /id}}
  - {topic: t, table: latest, mode: upsert, key: [id], columns: {id: /id}}
  - {topic: u, table: other, columns: {v: /v}}
"#,
            |_| None,
        )
        .expect("valid config");
        let risks = risks(&config, &["t".into()]);
        assert_eq!(risks.len(), 2, "{risks:?}");
        assert!(risks[0].starts_with(
            "route public.by_coordinates appends rows keyed by their Kafka coordinates"
        ));
        assert!(risks[1]
            .starts_with("route public.by_offset appends rows keyed by o, a Kafka coordinate"));
    }

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("earliest"), Ok(Target::Earliest));
        assert_eq!(Target::parse("latest"), Ok(Target::Latest));
        assert_eq!(Target::parse("translate"), Ok(Target::Translate));
        assert_eq!(Target::parse("offset:42"), Ok(Target::Offset(42)));
        assert_eq!(
            Target::parse("timestamp:2026-12-01T00:00:00Z"),
            Ok(Target::Timestamp(1_796_083_200_000))
        );
        for bad in ["offset:-1", "offset:x", "timestamp:soon", "newest", ""] {
            let e = Target::parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("--to {bad}:")), "{e}");
        }
        assert!(!Target::Latest.rereads());
        assert!(Target::Translate.rereads());
        assert_eq!(
            Target::Timestamp(1_796_083_200_000).describe(),
            "timestamp:2026-12-01T00:00:00.000Z"
        );
    }
}
