//! PgBouncer in `pool_mode = transaction` (Debian's pgbouncer 1.18) between
//! sluice and the test Postgres: the core correctness scenarios run through
//! it, with fewer server connections than sluice has clients, so server
//! connections pass between sluice's clients (and its replicas) at every
//! transaction boundary: whatever outlives a transaction on a server
//! connection (a named prepared statement, a session setting, a session
//! advisory lock) shows up as a wrong or failed statement.

use std::time::Duration;

use sluice::embedded::pgbouncer::PgBouncer;
use sluice::embedded::postgres::shared;

use crate::harness::*;

/// Server connections per (database, user): fewer than one sink's
/// `pool_size` (4), so sluice's clients share them.
const SERVER_CONNECTIONS: u32 = 3;

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

impl TargetDb {
    /// The end of a scenario, through a pooler: PgBouncer got no server answer for a client it had already let go
    /// of: a statement pipelined behind a transaction's end, whose client
    /// then waits for an answer that never comes (PgBouncer before 1.21
    /// hands the server connection on at the first idle ReadyForQuery).
    pub fn assert_pooler_clean(&self) {
        if let Some(pooler) = &self.pooler {
            let log = pooler.log();
            let lost: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("when not linked"))
                .collect();
            assert!(
                lost.is_empty(),
                "PgBouncer dropped {} server answers:\n{}",
                lost.len(),
                lost.join("\n")
            );
        }
    }
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
            let pg = shared().expect("embedded postgres");
            let pooler = PgBouncer::start(pg, SERVER_CONNECTIONS).expect("pgbouncer");
            pooler
                .ready(&database, Duration::from_secs(20))
                .await
                .expect("pgbouncer ready");
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
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let held = count(
        &db.client,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(held, 0, "an advisory lock outlived its migration");
    db.assert_pooler_clean();
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
    db.assert_pooler_clean();
}

/// An offset read abandoned at its deadline (here: stuck behind an ACCESS
/// EXCLUSIVE lock) must not go back into the pool with its answer pending:
/// the next checkout's writability check would queue behind it (and behind
/// PgBouncer 1.18 lose its answer once the read ends). With the lock still
/// held, the next checkout answers at once on a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_offset_read_does_not_hold_up_the_next_checkout() {
    for via in [Via::Direct, Via::PgBouncer] {
        let mut db = target_db(&format!("abandoned_{via:?}").to_lowercase(), via).await;
        sluice::migrate::migrate(&mut db.client, "sluice")
            .await
            .unwrap();
        let yaml = format!(
            "kafka: {{ brokers: \"127.0.0.1:9\", group_id: g }}\n\
             postgres: {{ url: \"{}\", pool_size: 1, connect_timeout: 5s }}\n\
             routes: [{{ topic: t, table: t, columns: {{ c: /c }} }}]\n",
            db.url
        );
        let config = sluice::config::Config::from_yaml(&yaml, |_| None).unwrap();
        let metrics = sluice::metrics::Metrics::register(&prometheus::Registry::new()).unwrap();
        let pool =
            sluice::pg::MeteredPool::new(sluice::pg::pool(&config.postgres).unwrap(), metrics.pool);
        let offsets = sluice::offsets::OffsetStore::new("sluice");
        let key = sluice::offsets::PartitionKey {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 0,
        };
        // The pool's one connection exists before the lock is taken.
        drop(pool.get().await.unwrap());
        let (mut locker, conn) = tokio_postgres::connect(
            &shared().unwrap().url(db.url.rsplit('/').next().unwrap()),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let lock = locker.transaction().await.unwrap();
        lock.batch_execute("LOCK TABLE sluice.offsets IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let read =
            sluice::sink::commit::read_offset(&pool, &offsets, &key, Duration::from_millis(500))
                .await;
        assert!(
            read.is_err(),
            "{via:?}: the read waits for the lock: {read:?}"
        );
        let next = tokio::time::timeout(Duration::from_secs(3), async {
            let client = pool.get().await.unwrap();
            client.simple_query("SELECT 1").await.unwrap();
        })
        .await;
        assert!(
            next.is_ok(),
            "{via:?}: the next checkout waited behind the abandoned read"
        );
        lock.rollback().await.unwrap();
        db.assert_pooler_clean();
    }
}
