//! A Patroni cluster on loopback for one test: one etcd, two PostgreSQL
//! nodes managed by Patroni (streaming replication), HAProxy on the write
//! port. Everything runs as the `postgres` user when the tests run as root
//! (PostgreSQL refuses root), in one temp dir, and is killed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice::embedded::postgres::shared;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::configs::{haproxy_cfg, patroni_yaml, NodePorts, Replication};
use crate::harness::{connect, eventually, free_port};

/// Start-up (etcd, initdb, base backup) on a busy 2-core machine.
const START: Duration = Duration::from_secs(90);

pub struct Node {
    pub ports: NodePorts,
    dir: PathBuf,
    config: PathBuf,
    patroni: Child,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// HAProxy's write port.
    pub port: u16,
    etcd: Child,
    haproxy: Child,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the cluster and waits until one node is the primary, the
    /// other streams from it, and HAProxy routes to the primary only.
    pub async fn start(scope: &str, replication: Replication) -> Cluster {
        // The shared server tells whether (and as whom) to drop root.
        let run_as = shared().expect("embedded postgres").run_as();
        let dir = tempfile::Builder::new()
            .prefix("sluice-patroni-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        chown(&root, run_as);
        let (etcd_port, etcd_peer) = (free_port(), free_port());
        let etcd = spawn(
            Command::new("etcd").args([
                "--name=e",
                &format!("--data-dir={}", root.join("etcd").display()),
                &format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
                &format!("--initial-cluster=e=http://127.0.0.1:{etcd_peer}"),
            ]),
            &root.join("etcd.log"),
            run_as,
        );
        let bin_dir = pg_bin_dir();
        let ports: Vec<NodePorts> = (0..2)
            .map(|i| NodePorts {
                name: format!("node{i}"),
                pg: free_port(),
                rest: free_port(),
            })
            .collect();
        let mut nodes = Vec::new();
        for p in &ports {
            let node_dir = root.join(&p.name);
            std::fs::create_dir(&node_dir).unwrap();
            let config = root.join(format!("{}.yml", p.name));
            let yaml = patroni_yaml(scope, p, etcd_port, &node_dir, &bin_dir, replication);
            std::fs::write(&config, yaml).unwrap();
            chown(&node_dir, run_as);
            chown(&config, run_as);
            // Both at once: the first to take etcd's initialize key runs
            // initdb, the other waits for it and takes a base backup.
            let patroni = spawn(
                Command::new("patroni").arg(&config),
                &root.join(format!("{}.log", p.name)),
                run_as,
            );
            nodes.push(Node {
                ports: p.clone(),
                dir: node_dir,
                config,
                patroni,
            });
        }
        let port = free_port();
        let cfg = root.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_cfg(port, &ports)).unwrap();
        let haproxy = spawn(
            Command::new(haproxy_bin()).arg("-db").arg("-f").arg(&cfg),
            &root.join("haproxy.log"),
            run_as,
        );
        let cluster = Cluster {
            nodes,
            port,
            etcd,
            haproxy,
            dir,
        };
        let primary = cluster.primary(START).await;
        let replica = 1 - primary;
        cluster.wait_role(replica, "/replica", START).await;
        if replication.synchronous {
            cluster.wait_role(replica, "/sync", START).await;
        }
        cluster.wait_routed_to(primary, START).await;
        cluster
    }

    /// The node whose Patroni answers `/primary` with 200.
    pub async fn primary(&self, timeout: Duration) -> usize {
        eventually(timeout, "a Patroni primary", || async {
            for (i, n) in self.nodes.iter().enumerate() {
                if rest_status(n.ports.rest, "/primary").await == Some(200) {
                    return Some(i);
                }
            }
            None
        })
        .await
    }

    /// Waits until node `i`'s Patroni answers `path` with 200 (`/primary`,
    /// `/replica`: a running, streaming standby, `/sync`).
    pub async fn wait_role(&self, i: usize, path: &str, timeout: Duration) {
        let rest = self.nodes[i].ports.rest;
        let what = format!("node{i} to answer {path} with 200");
        eventually(timeout, &what, || async {
            (rest_status(rest, path).await == Some(200)).then_some(())
        })
        .await
    }

    /// Waits until HAProxy has marked every other node down: four
    /// connections in a row through it (round robin) reach node `i`.
    pub async fn wait_routed_to(&self, i: usize, timeout: Duration) {
        let want = i32::from(self.nodes[i].ports.pg);
        let url = self.url("postgres");
        eventually(timeout, "HAProxy to route to the primary only", || async {
            for _ in 0..4 {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(conn);
                let row = client
                    .query_one("SELECT inet_server_port()", &[])
                    .await
                    .ok()?;
                (row.get::<_, i32>(0) == want).then_some(())?;
            }
            Some(())
        })
        .await
    }

    /// Through HAProxy's write port.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Straight to node `i`.
    pub fn node_url(&self, i: usize, database: &str) -> String {
        let port = self.nodes[i].ports.pg;
        format!("postgres://postgres@127.0.0.1:{port}/{database}?connect_timeout=2")
    }

    /// Creates `database` on the primary (`i`), returns a client to it there.
    pub async fn create_database(&self, i: usize, database: &str) -> tokio_postgres::Client {
        connect(&self.node_url(i, "postgres"))
            .await
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap();
        connect(&self.node_url(i, database)).await
    }

    /// `patronictl switchover` from node `from` to node `to`. Blocking.
    pub fn switchover(&self, from: usize, to: usize) {
        let out = Command::new("patronictl")
            .arg("-c")
            .arg(&self.nodes[from].config)
            .args(["switchover", "--force", "--leader"])
            .arg(&self.nodes[from].ports.name)
            .arg("--candidate")
            .arg(&self.nodes[to].ports.name)
            .output()
            .expect("run patronictl");
        assert!(
            out.status.success(),
            "patronictl switchover: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The pid of node `i`'s postmaster.
    pub fn postmaster_pid(&self, i: usize) -> Option<u32> {
        let pid = std::fs::read_to_string(self.nodes[i].dir.join("data/postmaster.pid")).ok()?;
        pid.lines().next()?.trim().parse().ok()
    }

    /// SIGKILL to node `i`'s postmaster (its backends notice and exit).
    pub fn kill_postmaster(&self, i: usize) {
        let pid = self.postmaster_pid(i).expect("postmaster.pid");
        signal("KILL", &[pid]);
    }

    /// Node `i`'s Patroni log lines about promotion and demotion.
    pub fn role_changes(&self, i: usize) -> Vec<String> {
        let name = &self.nodes[i].ports.name;
        let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        log.lines()
            .filter(|l| {
                let l = l.to_lowercase();
                ["promot", "failing over", "demot", "rewind"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .map(|l| format!("{name}: {l}"))
            .collect()
    }
}

impl Drop for Cluster {
    /// Patroni first (so it restarts nothing), then every postmaster
    /// (its children exit when it is gone), then HAProxy and etcd.
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.patroni.kill();
            let _ = n.patroni.wait();
        }
        let pids: Vec<u32> = (0..self.nodes.len())
            .filter_map(|i| self.postmaster_pid(i))
            .collect();
        if !pids.is_empty() {
            signal("KILL", &pids);
        }
        for c in [&mut self.haproxy, &mut self.etcd] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `kill -<sig>` to `pids`.
pub fn signal(sig: &str, pids: &[u32]) {
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{sig}"));
    cmd.args(pids.iter().map(u32::to_string));
    let _ = cmd.status();
}

/// The status of an HTTP `GET` to Patroni's REST API; `None` while it does
/// not answer (within 2 s).
pub async fn rest_status(port: u16, path: &str) -> Option<u16> {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

fn spawn(cmd: &mut Command, log: &Path, run_as: Option<(u32, u32)>) -> Child {
    let file = File::create(log).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    if let Some((uid, gid)) = run_as {
        std::os::unix::process::CommandExt::uid(cmd, uid);
        std::os::unix::process::CommandExt::gid(cmd, gid);
        // Patroni and etcd look for their home; root's is not theirs.
        cmd.env("HOME", "/tmp");
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?} (apt install patroni etcd-server haproxy): {e}"))
}

fn chown(path: &Path, run_as: Option<(u32, u32)>) {
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// The newest /usr/lib/postgresql/<version>/bin (Debian's layout).
fn pg_bin_dir() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql (apt install postgresql)")
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .max()
        .map(|(_, p)| p.join("bin"))
        .expect("a PostgreSQL version under /usr/lib/postgresql")
}

fn haproxy_bin() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("haproxy"))
}
