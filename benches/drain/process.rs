//! The process drains: the same append drain with sluice in a process of
//! its own, `sluice run` on the demo's configuration, so the sink's CPU per
//! record and its peak resident set (`VmHWM` of its process, read when the
//! backlog is drained) are its alone: in the in-process drains they
//! include the mock cluster, which holds the whole backlog, and this
//! process's copy of the events. The broker is the mock cluster, kept in
//! this process, or tansu (`--tansu BIN`) in its own.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice::config::Mode;
use sluice::demo::{self, CpuProbe, DemoArgs, DrainReport, Variant, POISON, TOPIC};
use sluice::embedded::kafka::produce;
use sluice::embedded::postgres::EmbeddedPostgres;

use super::pin;
use super::refs::connect;
use super::tansu::Broker;

/// What a process drain measured besides a [`DrainReport`].
pub struct ProcessDrain {
    pub report: DrainReport,
    /// The sluice process's peak resident set, kB.
    pub peak_rss_kb: Option<u64>,
}

pub async fn drain(
    pg: &EmbeddedPostgres,
    tansu: Option<&std::path::Path>,
    demo: &DemoArgs,
    variant: Variant,
    probe: CpuProbe,
) -> ProcessDrain {
    let url = pg.create_database("process").await.expect("database");
    let client = connect(&url).await;
    client
        .batch_execute(&demo::table_ddl())
        .await
        .expect("the demo's table");
    // Alive until the drain is verified (dropped at the end: killed).
    let broker = Broker::start(tansu, TOPIC, demo.partitions).await;
    let bootstrap = broker.bootstrap().to_string();
    let records = demo::events(demo);
    let poison = records
        .iter()
        .filter(|(_, _, v)| v.as_deref() == Some(POISON))
        .count();
    let delivered = produce(&bootstrap, TOPIC, records)
        .await
        .expect("the backlog produced into the broker");
    let mut end: HashMap<i32, i64> = HashMap::new();
    for (p, o) in &delivered {
        let e = end.entry(*p).or_default();
        *e = (*e).max(o + 1);
    }

    let dir = tempfile::tempdir().expect("a directory for the config");
    let config = dir.path().join("sluice.yaml");
    let yaml = demo::demo_config_with(&bootstrap, &url, Mode::Append, &variant);
    std::fs::write(&config, yaml).expect("write the config");
    let log = std::fs::File::create(dir.path().join("sluice.log")).expect("sluice's log");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sluice run");
    let pid = child.id();
    let cpu_now = || {
        let mut cpu = vec![pin::tree_cpu(pid)];
        cpu.extend(probe());
        cpu
    };
    let first = demo::wait_drained(&client, &end, Duration::from_secs(600), &cpu_now).await;
    let sink_elapsed = started.elapsed();
    let cpu_drained = cpu_now();
    let peak_rss_kb = peak_rss_kb(pid);
    // SIGTERM: the graceful stop a Deployment's rollout sends.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("sluice's status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = first.unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap_or_default();
        panic!("process drain: {e}\nsluice's log:\n{log}")
    });
    let verified = demo::verify(&client, delivered.len() - poison, poison)
        .await
        .expect("every event once, in per-key order");
    ProcessDrain {
        report: DrainReport::measured(
            &first,
            started,
            sink_elapsed,
            (cpu_drained[0], &cpu_drained),
            delivered.len(),
            verified,
        ),
        peak_rss_kb,
    }
}

/// A process's peak resident set (`VmHWM`), kB.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}
