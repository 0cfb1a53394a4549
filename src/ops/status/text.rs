//! `sluice status` as a table, for a person at a terminal (`--json` is
//! for scripts: docs/operations.md documents its fields).

use std::time::Duration;

use super::report::Report;

/// How long ago, for the table: "3.2s", "4m10s".
fn ago(seconds: f64) -> String {
    let d = Duration::from_millis((seconds * 1000.0) as u64);
    match d.as_secs() {
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        s => humantime::format_duration(Duration::from_secs(s))
            .to_string()
            .replace(' ', ""),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, s)| format!("{s:<w$}", w = widths[c]))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

impl Report {
    pub fn text(&self) -> String {
        let dash = || "-".to_string();
        let cluster = self.cluster_id.as_deref().unwrap_or("(not said)");
        let mut out = format!(
            "group {} on Kafka cluster {cluster}, at {}\n",
            self.group_id, self.checked_at
        );
        out += &match (&self.group, &self.group_error) {
            (Some(g), _) => format!(
                "consumer group: {}, {} member(s){}\n",
                g.state,
                g.members.len(),
                g.members
                    .iter()
                    .map(|m| format!("\n  {} ({}, {})", m.client_id, m.host, m.id))
                    .collect::<String>()
            ),
            (None, Some(e)) => format!("consumer group: unknown ({e})\n"),
            (None, None) => "consumer group: unknown\n".into(),
        };
        if self.state_schema_missing {
            out += "state schema: not created yet (sluice never ran with this postgres.state_schema)\n";
        }
        out.push('\n');
        let mut rows = vec![[
            "PARTITION",
            "LOG START",
            "HIGH",
            "STORED",
            "LAG",
            "LAG TIME",
            "OWNER",
            "LAST COMMIT",
            "LAST RECORD",
            "STATE",
        ]
        .map(String::from)
        .to_vec()];
        for p in &self.partitions {
            let state = match (p.halted, p.never_written, p.lag_records) {
                (true, ..) => "HALTED",
                (_, true, _) => "never written",
                (_, _, 0) => "caught up",
                _ => "lagging",
            };
            rows.push(vec![
                format!("{}[{}]", p.topic, p.partition),
                p.log_start.to_string(),
                p.high_watermark.to_string(),
                p.stored_offset.map_or_else(dash, |o| o.to_string()),
                p.lag_records.to_string(),
                p.lag_seconds.map_or_else(|| "?".into(), ago),
                p.owner.clone().unwrap_or_else(|| "unclaimed".into()),
                p.last_commit_at.clone().unwrap_or_else(dash),
                p.last_record_at.clone().unwrap_or_else(dash),
                state.into(),
            ]);
        }
        out += &table(&rows);
        for p in self.partitions.iter().filter(|p| p.halted) {
            for r in &p.halt_reasons {
                out += &format!("  {}[{}] halted: {r}\n", p.topic, p.partition);
            }
        }
        out.push('\n');
        let mut rows = vec![["ROUTE", "TOPIC", "DEAD LETTERS 1H", "DEAD LETTERS TOTAL"]
            .map(String::from)
            .to_vec()];
        for r in &self.routes {
            rows.push(vec![
                r.route.clone(),
                r.topic.clone(),
                r.dead_letters_last_hour.to_string(),
                r.dead_letters_total.to_string(),
            ]);
        }
        out += &table(&rows);
        if !self.replicas.is_empty() {
            let ready = self.replicas.iter().filter(|r| r.ready).count();
            out += &format!("\nreplicas ready: {ready} of {}\n", self.replicas.len());
            for r in &self.replicas {
                out += &format!("  {}: {}\n", r.url, r.describe());
            }
        }
        for p in &self.problems {
            out += &format!("\nerror: {p}\n");
        }
        out += &format!(
            "\nverdict: {} (exit {})\n",
            self.verdict.word(),
            self.exit_code
        );
        out
    }
}
