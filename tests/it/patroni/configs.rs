//! The text of the test cluster's configuration: one Patroni YAML per node
//! and HAProxy's, as docs/operations.md recommends them (timings shortened
//! only where the docs say so, to keep the tests short).

use std::path::Path;

/// How the cluster replicates.
#[derive(Debug, Clone, Copy)]
pub struct Replication {
    /// Patroni's `synchronous_mode`: every commit waits for the standby.
    pub synchronous: bool,
    /// Patroni's `maximum_lag_on_failover` (bytes): a standby further
    /// behind than this is not promoted.
    pub maximum_lag_on_failover: u64,
}

/// The ports of one node.
#[derive(Debug, Clone)]
pub struct NodePorts {
    pub name: String,
    pub pg: u16,
    pub rest: u16,
}

/// One Patroni node's configuration. `dir` is the node's own directory
/// (data dir, socket, pgpass).
pub fn patroni_yaml(
    scope: &str,
    node: &NodePorts,
    etcd_port: u16,
    dir: &Path,
    bin_dir: &Path,
    replication: Replication,
) -> String {
    let NodePorts { name, pg, rest } = node;
    let dir = dir.display();
    let bin_dir = bin_dir.display();
    let Replication {
        synchronous,
        maximum_lag_on_failover,
    } = replication;
    // ttl/loop_wait/retry_timeout: the leader key expires 10 s after its
    // holder stops renewing it (loop_wait + 2 × retry_timeout <= ttl).
    // primary_start_timeout 0: a crashed primary is failed over at once
    // instead of being restarted in place first.
    // fsync off: the tests never crash the machine, only processes, and the
    // page cache outlives those; it spares the 2-core test machine's disk.
    format!(
        r#"scope: {scope}
name: {name}
log:
  level: INFO
restapi:
  listen: "127.0.0.1:{rest}"
  connect_address: "127.0.0.1:{rest}"
etcd3:
  hosts: "127.0.0.1:{etcd_port}"
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: {maximum_lag_on_failover}
    primary_start_timeout: 0
    synchronous_mode: {synchronous}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: "on"
        max_wal_senders: 5
        max_replication_slots: 5
        max_connections: 60
        shared_buffers: 32MB
        fsync: "off"
  initdb:
    - encoding: UTF8
    - auth: trust
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: "127.0.0.1:{pg}"
  connect_address: "127.0.0.1:{pg}"
  data_dir: {dir}/data
  bin_dir: {bin_dir}
  pgpass: {dir}/pgpass
  authentication:
    superuser:
      username: postgres
      password: unused-trust
    replication:
      username: postgres
      password: unused-trust
  parameters:
    unix_socket_directories: {dir}
"#
    )
}

/// HAProxy in front of the nodes: the write port goes to the node whose
/// Patroni REST `/primary` answers 200 (Patroni's documented config).
pub fn haproxy_cfg(port: u16, nodes: &[NodePorts]) -> String {
    let servers: String = nodes
        .iter()
        .map(|n| {
            format!(
                "    server {} 127.0.0.1:{} maxconn 100 check port {}\n",
                n.name, n.pg, n.rest
            )
        })
        .collect();
    format!(
        "global\n    maxconn 300\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30m\n    \
         timeout server 30m\n    timeout check 2s\n\
         listen primary\n    bind 127.0.0.1:{port}\n    option httpchk OPTIONS /primary\n    \
         http-check expect status 200\n    \
         default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions\n{servers}"
    )
}
