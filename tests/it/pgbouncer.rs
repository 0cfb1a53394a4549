//! PgBouncer in `pool_mode = transaction` (Debian's pgbouncer 1.18) between
//! sluice and the test Postgres: the core correctness scenarios run through
//! it, with fewer server connections than sluice has clients, so server
//! connections pass between sluice's clients (and its replicas) at every
//! transaction boundary: whatever outlives a transaction on a server
//! connection (a named prepared statement, a session setting, a session
//! advisory lock) shows up as a wrong or failed statement.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice::embedded::postgres::shared;

use crate::harness::*;

/// A pgbouncer process in front of the shared test server, stopped on drop.
pub struct PgBouncer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Server connections per (database, user): fewer than one sink's
/// `pool_size` (4), so sluice's clients share them.
const SERVER_CONNECTIONS: u32 = 3;

impl PgBouncer {
    pub fn start() -> PgBouncer {
        let pg = shared().expect("embedded postgres");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={pg_port}\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
                 unix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
                 pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n\
                 max_client_conn = 500\nlogfile = {log}\n",
                pg_port = pg.port(),
                users = users.display(),
                log = dir.path().join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(pgbouncer_bin());
        cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
        // pgbouncer refuses to run as root.
        if let Some((uid, gid)) = pg.run_as() {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
            for f in [&users, &ini] {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).unwrap();
            }
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, gid);
        }
        let child = cmd
            .spawn()
            .expect("spawn pgbouncer (apt install pgbouncer)");
        PgBouncer { child, port, dir }
    }

    /// The URL of `database` through the pooler.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// Waits until a client gets through the pooler to `database`.
    pub async fn ready(&self, database: &str) {
        let url = self.url(database);
        eventually(Duration::from_secs(20), "pgbouncer to accept", || async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(conn);
            client.simple_query("SELECT 1").await.ok().map(|_| ())
        })
        .await
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pgbouncer_bin() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pgbouncer"))
}

/// Where a scenario's sink connects: straight to Postgres or through a
/// transaction-pooling PgBouncer. The test's own client is always direct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Direct,
    PgBouncer,
}

/// A fresh database: the URL the sink uses (per `via`), a direct client,
/// and the pooler (kept alive as long as this is).
pub struct TargetDb {
    pub url: String,
    pub client: tokio_postgres::Client,
    pub pooler: Option<PgBouncer>,
}

pub async fn target_db(prefix: &str, via: Via) -> TargetDb {
    let (url, client) = fresh_db(prefix).await;
    match via {
        Via::Direct => TargetDb {
            url,
            client,
            pooler: None,
        },
        Via::PgBouncer => {
            let database = url.rsplit('/').next().unwrap().to_string();
            let pooler = PgBouncer::start();
            pooler.ready(&database).await;
            TargetDb {
                url: pooler.url(&database),
                client,
                pooler: Some(pooler),
            }
        }
    }
}

// The scenarios, through the pooler. Each one ends on the exact table and
// offsets (see the scenario's own assertions).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_killed_five_times_loses_and_duplicates_nothing() {
    crate::crash::killed_five_times(Via::PgBouncer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_upserts_with_deletes_and_versions_equal_the_model() {
    crate::upsert::upserts_equal_the_model(Via::PgBouncer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_poison_records_are_dead_lettered() {
    crate::poison::poison_records_are_dead_lettered(Via::PgBouncer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_a_rebalance_between_two_replicas_loses_and_duplicates_nothing() {
    crate::rebalance::revoke_during_batches("cooperative-sticky", Via::PgBouncer).await;
}

/// Replicas migrating at once, twice over: a session advisory lock taken on
/// one server connection and released on another would leave the lock
/// held, and the second round would wait on it forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_replicas_migrate_at_once() {
    let db = target_db("pgbouncer_migrate", Via::PgBouncer).await;
    for round in 0..2 {
        let runs = (0..4).map(|_| {
            let url = db.url.clone();
            async move {
                let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("connect through pgbouncer");
                tokio::spawn(conn);
                sluice::migrate::migrate(&mut client, "sluice").await
            }
        });
        let results =
            tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(runs))
                .await
                .unwrap_or_else(|_| panic!("round {round}: migrations still waiting after 30 s"));
        let applied: Vec<Vec<i32>> = results
            .into_iter()
            .map(|r| r.expect("migration through pgbouncer"))
            .collect();
        let firsts = applied.iter().filter(|a| !a.is_empty()).count();
        assert_eq!(
            firsts,
            usize::from(round == 0),
            "round {round}: {applied:?}"
        );
    }
    let versions: Vec<i32> = db
        .client
        .query(
            "SELECT version FROM sluice.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2]);
    let held = count(
        &db.client,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(held, 0, "an advisory lock outlived its migration");
}

/// `statement_timeout` holds through the pooler (it is `SET LOCAL` in each
/// transaction, not a startup parameter, which PgBouncer refuses): a batch
/// stuck behind a 3 s trigger is cancelled after 1 s and retried; once the
/// trigger is gone the table is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_the_statement_timeout_holds() {
    let db = target_db("pgbouncer_timeout", Via::PgBouncer).await;
    db.client.batch_execute(ORDERS_TABLE).await.unwrap();
    slow_inserts(&db.client, 3.0).await;
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(5_000, 2, 50)).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &db.url, "orders", "g", "")
        .replace("pool_size: 4", "pool_size: 4\n  statement_timeout: 1s");
    let sink = Sink::start(&yaml);
    // 57014 query_canceled: the statement timeout fired.
    eventually(Duration::from_secs(60), "a cancelled statement", || async {
        (metric_where(&sink.registry, "sluice_pg_errors_total", "class", "57") > 0.0).then_some(())
    })
    .await;
    assert_eq!(count(&db.client, "SELECT count(*) FROM orders").await, 0);
    db.client
        .batch_execute("DROP TRIGGER slow ON orders")
        .await
        .unwrap();
    wait_drained(&db.client, "orders", &end, Duration::from_secs(60)).await;
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&db.client, 5_000).await;
}
