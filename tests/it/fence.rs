//! The offset fence: a stale worker cannot write; a commit whose reply is
//! lost is recognised, and a commit aborted by a terminated backend is
//! re-done — in both cases without a duplicate or a gap.

use std::time::Duration;

use prometheus::Registry;
use sluice::config::Config;
use sluice::metrics::Metrics;
use sluice::offsets::{OffsetStore, PartitionKey};
use sluice::record::Record;
use sluice::sink::commit::{Committer, Outcome};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::harness::*;
use crate::proxy::Proxy;

fn records(range: std::ops::Range<i64>) -> Vec<Record> {
    range
        .map(|i| Record {
            offset: i,
            timestamp_ms: None,
            key: None,
            value: Some(format!(r#"{{"k":"key-{i}","seq":0,"amount":"1.00"}}"#).into()),
            headers: Vec::new(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_worker_cannot_commit() {
    let (url, client) = fresh_db("fence_stale").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let config = Config::from_yaml(
        &orders_config("127.0.0.1:1", &url, "orders", "g", ""),
        |_| None,
    )
    .unwrap();
    let pool = sluice::pg::pool(&config.postgres).unwrap();
    let mut conn = pool.get().await.unwrap();
    sluice::migrate::migrate(&mut conn, "sluice").await.unwrap();
    let writers = sluice::sink::plan_writers(&config, &**conn).await.unwrap();
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let pool = sluice::pg::MeteredPool::new(pool, metrics.pool.clone());
    let offsets = OffsetStore::new("sluice");
    let key = PartitionKey {
        group_id: "g".into(),
        topic: "orders".into(),
        partition: 0,
    };
    let cancel = CancellationToken::new();
    let breaker = sluice::sink::breaker::Breaker::new(0.5);
    let committer = |owner| Committer {
        pool: &pool,
        offsets: &offsets,
        writer: &writers["orders"],
        metrics: &metrics,
        key: &key,
        owner,
        cancel: &cancel,
        retry: &config.retry,
        deadline: Duration::from_secs(30),
        throttle: None,
        breaker: &breaker,
    };

    let (old, new) = (Uuid::new_v4(), Uuid::new_v4());
    let first = offsets
        .claim(&**conn, &key, old, Some("blue"))
        .await
        .unwrap();
    assert_eq!(
        (first.next_offset, first.cluster_id.as_deref()),
        (None, Some("blue"))
    );
    assert_eq!(
        committer(old).commit(None, &records(0..5)).await.unwrap(),
        Outcome::Committed { next_offset: 5 }
    );
    // The partition moves: the new owner's claim sees offset 5 and advances.
    // Another cluster's claim sees the offset and the cluster it belongs
    // to, which it does not overwrite (Shared::claim halts on it).
    let moved = offsets
        .claim(&**conn, &key, new, Some("green"))
        .await
        .unwrap();
    assert_eq!(
        moved,
        sluice::offsets::Claimed {
            next_offset: Some(5),
            cluster_id: Some("blue".into()),
            adopted: false,
        }
    );
    assert_eq!(
        committer(new)
            .commit(Some(5), &records(5..10))
            .await
            .unwrap(),
        Outcome::Committed { next_offset: 10 }
    );
    // The old worker, unaware, commits its next batch: refused, nothing written.
    assert_eq!(
        committer(old)
            .commit(Some(5), &records(5..10))
            .await
            .unwrap(),
        Outcome::Stale { owner: Some(new) }
    );
    assert_eq!(
        committer(old)
            .commit(Some(10), &records(10..15))
            .await
            .unwrap(),
        Outcome::Stale { owner: Some(new) }
    );
    assert_eq!(count(&client, "SELECT count(*) FROM orders").await, 10);
    assert_eq!(
        count(&client, "SELECT count(DISTINCT src_offset) FROM orders").await,
        10
    );
    assert_eq!(metric(&registry, "sluice_fence_rejections_total"), 2.0);
    assert_eq!(
        offsets.read(&**conn, &key).await.unwrap(),
        Some((new, Some(10)))
    );
}

/// Sets up a table whose commit sleeps once the row at offset 1000 is in the
/// transaction (a deferred constraint trigger, run at COMMIT), runs the sink
/// through a proxy, and returns once that commit is sleeping.
async fn sink_with_sleeping_commit(
    name: &str,
) -> (
    tokio_postgres::Client,
    Proxy,
    Sink,
    std::collections::HashMap<i32, i64>,
    sluice::embedded::kafka::MockKafka,
) {
    let (url, client) = fresh_db(name).await;
    client
        .batch_execute(&format!(
            "{ORDERS_TABLE};
             CREATE TABLE ctl (armed boolean NOT NULL); INSERT INTO ctl VALUES (true);
             CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF (SELECT armed FROM ctl) THEN PERFORM pg_sleep(4); END IF; RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON orders DEFERRABLE INITIALLY DEFERRED
               FOR EACH ROW WHEN (NEW.src_offset = 1000) EXECUTE FUNCTION slow_commit();"
        ))
        .await
        .unwrap();
    let kafka = kafka("orders", 1);
    let end = produce_all(&kafka, "orders", orders(3_000, 1, 50)).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &proxied, "orders", "g", "")
        .replace("max_rows: 2000", "max_rows: 400");
    let sink = Sink::start(&yaml);
    eventually(Duration::from_secs(60), "the commit to sleep", || async {
        (count(
            &client,
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND datname = current_database()",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    // Disarm so the retry's commit does not sleep again; the sleeping
    // transaction only reads ctl, so this does not wait for it.
    client
        .batch_execute("UPDATE ctl SET armed = false")
        .await
        .unwrap();
    (client, proxy, sink, end, kafka)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_reply_is_lost_is_not_applied_twice() {
    let (client, proxy, sink, end, _kafka) = sink_with_sleeping_commit("fence_lost_reply").await;
    // The client loses its connection while the server goes on to commit.
    proxy.cut();
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;
    assert_eq!(
        sink.metric("sluice_ambiguous_commits_total"),
        1.0,
        "the retry found its batch committed"
    );
    assert!(sink.metric("sluice_retries_total") >= 1.0);
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, 3_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_aborted_by_a_terminated_backend_is_redone() {
    let (client, _proxy, sink, end, _kafka) = sink_with_sleeping_commit("fence_terminated").await;
    let terminated = count(
        &client,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE wait_event = 'PgSleep' AND datname = current_database()) t",
    )
    .await;
    assert_eq!(terminated, 1);
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;
    assert_eq!(sink.metric("sluice_ambiguous_commits_total"), 0.0);
    assert!(sink.metric("sluice_retries_total") >= 1.0);
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, 3_000).await;
}

/// A claim the group does not back (a zombie's, or a member that died
/// after claiming) fences the worker that the group still assigns the
/// partition to; with no revoke arriving within `kafka.revoke_timeout`,
/// that worker claims the partition again and carries on, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_worker_still_assigned_claims_its_partition_again() {
    const ROWS: usize = 6_000;
    let (url, client) = fresh_db("fence_reclaim").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 1);
    let end = produce_all(&kafka, "orders", orders(ROWS, 1, 100)).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "reclaim", "")
        .replace(
            "  group_id: reclaim",
            "  group_id: reclaim\n  revoke_timeout: 1s",
        )
        .replace("max_rows: 2000", "max_rows: 200");
    // Slow enough that the zombie's claim lands mid-drain.
    let sink = Sink::start(&format!("{yaml}\nthrottle:\n  max_rows_per_second: 2000\n"));
    eventually(Duration::from_secs(30), "the sink to write", || async {
        (count(&client, "SELECT count(*) FROM orders").await >= 1_000).then_some(())
    })
    .await;

    // What a claim does: a fresh owner token in the partition's row.
    let zombie = Uuid::new_v4();
    client
        .execute(
            "UPDATE sluice.offsets SET owner = $1 WHERE group_id = 'reclaim'",
            &[&zombie],
        )
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "a fence rejection", || async {
        (sink.metric("sluice_fence_rejections_total") >= 1.0).then_some(())
    })
    .await;
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;

    assert_eq!(sink.metric("sluice_partition_reclaims_total"), 1.0);
    let owner: Uuid = client
        .query_one(
            "SELECT owner FROM sluice.offsets WHERE topic = 'orders'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(
        owner, zombie,
        "the worker's new claim replaced the zombie's"
    );
    sink.stop().await.expect("clean stop");
    assert_orders_exact(&client, ROWS as i64).await;
}

/// Hardening #12: recording a halt is fenced like a commit. A worker that
/// lost its partition cannot re-insert a halt after the new owner's claim
/// cleared it; the owner can record one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_worker_cannot_record_a_halt() {
    let (url, _client) = fresh_db("fence_halt").await;
    let config = Config::from_yaml(
        &orders_config("127.0.0.1:1", &url, "orders", "g", ""),
        |_| None,
    )
    .unwrap();
    let pool = sluice::pg::pool(&config.postgres).unwrap();
    let mut client = pool.get().await.unwrap();
    sluice::migrate::migrate(&mut client, "sluice")
        .await
        .unwrap();
    let offsets = OffsetStore::new("sluice");
    let key = PartitionKey {
        group_id: "g".into(),
        topic: "orders".into(),
        partition: 0,
    };
    let (stale, owner) = (Uuid::new_v4(), Uuid::new_v4());
    offsets.claim(&**client, &key, stale, None).await.unwrap();
    assert!(offsets
        .record_halt(&**client, &key, stale, 5, "bad record", None)
        .await
        .unwrap());
    // The new owner's claim clears the halt; the stale worker's retry of
    // its halt must not bring it back.
    offsets.claim(&**client, &key, owner, None).await.unwrap();
    let halts = "SELECT count(*) FROM sluice.halts";
    assert_eq!(count(&client, halts).await, 0);
    assert!(!offsets
        .record_halt(&**client, &key, stale, 5, "bad record", None)
        .await
        .unwrap());
    assert_eq!(count(&client, halts).await, 0);
    assert!(offsets
        .record_halt(&**client, &key, owner, 7, "bad record", Some("22P02"))
        .await
        .unwrap());
    assert_eq!(count(&client, halts).await, 1);
}
