//! A replica: `sluice run` as a child process, as Kubernetes runs it, so a
//! test can SIGKILL it, SIGTERM it, scrape it and read its RSS.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, get, total};

pub struct Replica {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// Starts `sluice run` with `yaml` (which must not set `http`); its
    /// metrics are served on a free port.
    pub fn spawn(yaml: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let path = dir.path().join("sluice.yaml");
        let yaml = format!("{yaml}\nhttp:\n  listen: \"127.0.0.1:{port}\"\n");
        std::fs::write(&path, yaml).unwrap();
        // A file, not a pipe: nobody reads a pipe while the test runs.
        let log = dir.path().join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("REPLICA_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn sluice");
        Replica {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no drain, no goodbye to the group.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit: its status and how long it took.
    pub async fn terminate(mut self) -> (ExitStatus, Duration, String) {
        let began = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM");
        let status = tokio::task::block_in_place(|| self.child.wait().unwrap());
        (status, began.elapsed(), self.log_tail())
    }

    /// The sum of a metric's samples; `None` while it does not answer.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = get(self.port, "/metrics").await?;
        Some(total(&text, name))
    }

    /// Resident set size, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// Its log lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> String {
        let logs = std::fs::read_to_string(&self.log).unwrap_or_default();
        logs.lines()
            .filter(|l| l.contains(needle))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let logs = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut start = logs.len().saturating_sub(4000);
        while !logs.is_char_boundary(start) {
            start += 1;
        }
        logs[start..].to_string()
    }
}

impl Drop for Replica {
    /// A failing test still leaves no sluice process behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
