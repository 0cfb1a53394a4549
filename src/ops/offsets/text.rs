//! `sluice offsets show`'s table and JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::store::{Partition, Row};
use crate::config::Config;
use crate::offsets::UNCLAIMED;

/// One row of `show --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub topic: String,
    pub partition: i32,
    #[serde(flatten)]
    pub row: Row,
}

pub fn listing(rows: &BTreeMap<Partition, Row>) -> Vec<Listed> {
    rows.iter()
        .map(|((topic, partition), row)| Listed {
            topic: topic.clone(),
            partition: *partition,
            row: row.clone(),
        })
        .collect()
}

fn time(at: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

pub fn show(config: &Config, rows: &BTreeMap<Partition, Row>) -> String {
    if rows.is_empty() {
        return format!(
            "no stored offsets for group {} (sluice has not claimed a partition yet: \
             kafka.start_from applies)\n",
            config.kafka.group_id
        );
    }
    let mut out = format!(
        "{:<24} {:>5} {:>14} {:<24} {:<10} {:<20} {:<20} {}\n",
        "TOPIC", "PART", "NEXT OFFSET", "CLUSTER", "OWNER", "UPDATED", "LAST RECORD", "HALTED"
    );
    for ((topic, partition), r) in rows {
        let owner = match r.owner == UNCLAIMED {
            true => "unclaimed".to_string(),
            false => r.owner.to_string()[..8].to_string(),
        };
        out += &format!(
            "{:<24} {:>5} {:>14} {:<24} {:<10} {:<20} {:<20} {}\n",
            topic,
            partition,
            r.next_offset.map_or("-".into(), |n| n.to_string()),
            r.cluster_id.as_deref().unwrap_or("-"),
            owner,
            time(r.updated_at),
            r.last_record_at.map_or("-".into(), time),
            r.halted_at_offset
                .map_or(String::new(), |o| format!("before offset {o}")),
        );
    }
    out
}
