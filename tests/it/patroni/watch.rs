//! What a scenario measures and drives around the failure: a paced
//! producer (the steady drain), and a watcher that times the new primary's
//! promotion and its first commit of sluice's while sampling `/readyz`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice::embedded::kafka::produce;
use tokio::task::JoinHandle;

use crate::harness::{get, next_offsets, Produced};

/// Produces `records` in order, `chunk` at a time, one chunk per `every`:
/// a stream that keeps arriving while the cluster fails over. Returns the
/// next offset per partition.
pub fn paced_producer(
    brokers: String,
    topic: &'static str,
    records: Produced,
    chunk: usize,
    every: Duration,
) -> JoinHandle<HashMap<i32, i64>> {
    tokio::spawn(async move {
        let mut delivered = Vec::new();
        let mut tick = tokio::time::interval(every);
        let mut rest = records;
        while !rest.is_empty() {
            tick.tick().await;
            let tail = rest.split_off(chunk.min(rest.len()));
            delivered.extend(produce(&brokers, topic, rest).await.expect("produce"));
            rest = tail;
        }
        next_offsets(delivered)
    })
}

/// What the watcher saw, in time since the failure began.
#[derive(Debug, Default)]
pub struct Timeline {
    /// The new primary left recovery.
    pub promoted: Option<Duration>,
    /// A new connection through HAProxy first reached it as a primary.
    pub routed: Option<Duration>,
    /// sluice's first commit on it (its offsets moved past what it had at
    /// promotion).
    pub first_commit: Option<Duration>,
    /// Every `/readyz` status change: (when, status; 0 = no answer).
    pub readyz: Vec<(Duration, u16)>,
}

impl std::fmt::Display for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = |d: Option<Duration>| {
            d.map_or("not seen".into(), |d| format!("{:.1} s", d.as_secs_f64()))
        };
        write!(
            f,
            "promoted after {}, HAProxy routed to it after {}, sluice's first commit there after {}; /readyz: ",
            secs(self.promoted),
            secs(self.routed),
            secs(self.first_commit)
        )?;
        for (at, status) in &self.readyz {
            write!(f, "{status} at {:.1} s; ", at.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Where the watcher looks: the new primary straight (`node`, listening on
/// `node_port`) and through HAProxy (`haproxy`), and sluice's HTTP port.
pub struct Watched {
    pub node: String,
    pub node_port: u16,
    pub haproxy: String,
    pub http_port: u16,
}

/// Watches from `since` until sluice has committed on the new primary, or
/// `timeout`; samples sluice's `/readyz` meanwhile.
pub fn watch(w: Watched, since: Instant, timeout: Duration) -> JoinHandle<Timeline> {
    tokio::spawn(async move {
        let mut t = Timeline::default();
        let mut client = None;
        let mut at_promotion = None;
        // Its own task: a probe through HAProxy may wait on a dead server.
        let probe = tokio::spawn(first_routed(w.haproxy.clone(), w.node_port, since, timeout));
        while since.elapsed() < timeout && t.first_commit.is_none() {
            let status = get(w.http_port, "/readyz").await.map_or(0, |(s, _)| s);
            if t.readyz.last().is_none_or(|(_, last)| *last != status) {
                t.readyz.push((since.elapsed(), status));
            }
            if client.is_none() {
                client = tokio_postgres::connect(&w.node, tokio_postgres::NoTls)
                    .await
                    .ok()
                    .map(|(c, conn)| {
                        tokio::spawn(conn);
                        c
                    });
            }
            if let Some(c) = &client {
                let sql = "SELECT pg_is_in_recovery(), \
                           (SELECT coalesce(sum(next_offset), 0)::int8 FROM sluice.offsets)";
                match c.query_one(sql, &[]).await {
                    Ok(row) => {
                        let (recovering, sum): (bool, i64) = (row.get(0), row.get(1));
                        match at_promotion {
                            None if !recovering => {
                                t.promoted = Some(since.elapsed());
                                at_promotion = Some(sum);
                            }
                            Some(base) if sum != base => t.first_commit = Some(since.elapsed()),
                            _ => {}
                        }
                    }
                    Err(_) => client = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A probe stuck on a dead server may see it a little after sluice.
        let abort = probe.abort_handle();
        match tokio::time::timeout(Duration::from_secs(3), probe).await {
            Ok(seen) => t.routed = seen.ok().flatten(),
            Err(_) => abort.abort(),
        }
        t
    })
}

/// When a new connection through `haproxy` first lands on the primary
/// listening on `port`.
async fn first_routed(
    haproxy: String,
    port: u16,
    since: Instant,
    timeout: Duration,
) -> Option<Duration> {
    while since.elapsed() < timeout {
        if let Ok((client, conn)) = tokio_postgres::connect(&haproxy, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let sql = "SELECT inet_server_port(), pg_is_in_recovery()";
            if client
                .query_one(sql, &[])
                .await
                .is_ok_and(|row| row.get::<_, i32>(0) == i32::from(port) && !row.get::<_, bool>(1))
            {
                return Some(since.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
