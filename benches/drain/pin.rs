//! `--pin`: Postgres (and PgBouncer) on CPU 0, this process (sluice and the
//! in-process mock cluster) on CPU 1, and the CPU time of each side, so a
//! drain shows which side is saturated (a side near 1.0 core busy is the
//! bottleneck; both well under it means the pipeline waits).
//!
//! Affinity is set with `taskset -a -p` (util-linux), which every thread of
//! a process needs: no libc binding for a benchmark flag. Threads and
//! processes created later inherit it from their creator, so this process
//! is pinned before the drains start their threads, and the postmaster
//! right after it starts, before any connection: backends fork from it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The CPU Postgres and PgBouncer run on; this process gets [`SINK_CPU`].
pub const PG_CPU: usize = 0;
pub const SINK_CPU: usize = 1;

/// Pins every thread of `pid` to `cpu`.
fn taskset(pid: u32, cpu: usize) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .output()
        .map_err(|e| format!("taskset (util-linux): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset -a -p -c {cpu} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Pins this process (all its threads so far) to [`SINK_CPU`].
pub fn pin_self() -> Result<(), String> {
    taskset(std::process::id(), SINK_CPU)
}

/// Pins `pid` and every process under it to [`PG_CPU`]: the postmaster's
/// background processes (checkpointer, WAL writer, autovacuum launcher)
/// exist before we can pin it.
pub fn pin_tree(pid: u32) -> Result<(), String> {
    taskset(pid, PG_CPU)?;
    for child in descendants(pid) {
        // A child may have exited since it was listed.
        if let Err(e) = taskset(child, PG_CPU) {
            if Path::new(&format!("/proc/{child}")).exists() {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The fields after the command name of `/proc/<pid>/stat` (the name may
/// hold spaces; the fields after it do not).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // Field 3 (state) is a letter: keep positions, parse numbers only.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// Every process whose parent is `pid`, and theirs, from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // Field 4 (ppid) is the second after the name.
            if let Some(ppid) = stat_fields(child).and_then(|f| f.get(1).copied()) {
                all.push((child, ppid as u32));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// CPU time of `pid` and everything under it, live or exited: its own
/// user + system time, the times of children it has reaped (the
/// postmaster reaps every backend that disconnects), and those of the
/// processes still running. In the kernel's 100 Hz `USER_HZ` ticks.
pub fn tree_cpu(pid: u32) -> Option<Duration> {
    // utime, stime, cutime, cstime: fields 14-17, 11-14 after the name.
    let ticks = |p: u32| -> Option<u64> { Some(stat_fields(p)?.get(11..15)?.iter().sum()) };
    let mut total = ticks(pid)?;
    total += descendants(pid).into_iter().filter_map(ticks).sum::<u64>();
    Some(Duration::from_millis(total * 10))
}

/// Cores busy: CPU time over wall time.
pub fn cores(cpu: Option<Duration>, wall: Duration) -> Option<f64> {
    cpu.filter(|_| !wall.is_zero())
        .map(|c| c.as_secs_f64() / wall.as_secs_f64())
}
