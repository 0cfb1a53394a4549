//! /metrics, /healthz, /readyz and logs: lag is right mid-drain and after,
//! counts match the table, promtool accepts the output, readiness follows
//! the group join and Postgres, and no secret leaks.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use crate::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_and_counts_are_right_mid_drain_and_after() {
    let (url, client) = fresh_db("metrics").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 4);
    let end = produce_all(&kafka, "orders", orders(40_000, 4, 400)).await;
    let port = free_port();
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "g", "")
        .replace("max_rows: 2000", "max_rows: 500");
    let sink = Sink::start(&with_http(&yaml, port));
    eventually(Duration::from_secs(60), "some rows", || async {
        (count(&client, "SELECT count(*) FROM orders").await >= 4_000).then_some(())
    })
    .await;

    // Freeze commits mid-drain: a lock the sink's COPY waits behind.
    let locker = connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let committed = stored_offsets(&client, "orders").await;
    let text = eventually(
        Duration::from_secs(30),
        "lag to reflect the frozen offsets",
        || async {
            let (_, text) = get(port, "/metrics").await?;
            let lag = samples(&text, "sluice_partition_lag_records");
            let expected: HashMap<String, f64> = end
                .iter()
                .map(|(p, hw)| {
                    (
                        p.to_string(),
                        (hw - committed.get(p).copied().unwrap_or(0)) as f64,
                    )
                })
                .collect();
            (lag == expected).then_some(text)
        },
    )
    .await;
    assert!(
        total(&text, "sluice_partition_lag_records") > 0.0,
        "mid-drain"
    );
    assert!(
        total(&text, "sluice_partition_lag_seconds") > 0.0,
        "behind means seconds too"
    );
    locker.batch_execute("ROLLBACK").await.unwrap();

    wait_drained(&client, "orders", &end, Duration::from_secs(120)).await;
    let text = eventually(Duration::from_secs(30), "lag to reach 0", || async {
        let (_, text) = get(port, "/metrics").await?;
        let lag = samples(&text, "sluice_partition_lag_records");
        (lag.len() == 4 && lag.values().all(|v| *v == 0.0)).then_some(text)
    })
    .await;
    assert!(samples(&text, "sluice_partition_lag_seconds")
        .values()
        .all(|v| *v == 0.0));
    let rows = count(&client, "SELECT count(*) FROM orders").await;
    assert_eq!(total(&text, "sluice_rows_written_total"), rows as f64);
    // One transaction per committed batch: rows of a batch share an xmin.
    let batches = count(&client, "SELECT count(DISTINCT xmin::text) FROM orders").await;
    assert_eq!(
        total(&text, "sluice_batch_commit_seconds_count"),
        batches as f64
    );
    assert_eq!(total(&text, "sluice_assigned_partitions"), 4.0);
    assert_eq!(total(&text, "sluice_build_info"), 1.0);

    // promtool (Debian's prometheus package) accepts the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (./dev test installs it)");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
    sink.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_shows_a_waiting_backlog_before_any_commit() {
    let (url, client) = fresh_db("idle_lag").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(1_000, 2, 50)).await;
    let locker = connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let port = free_port();
    let sink = Sink::start(&with_http(
        &orders_config(kafka.bootstrap_servers(), &url, "orders", "g", ""),
        port,
    ));
    eventually(
        Duration::from_secs(30),
        "the lag gauge to show the backlog",
        || async {
            let (_, text) = get(port, "/metrics").await?;
            (total(&text, "sluice_partition_lag_records") == 1_000.0).then_some(())
        },
    )
    .await;
    assert_eq!(
        sink.metric("sluice_batch_commit_seconds"),
        0.0,
        "nothing committed yet"
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;
    sink.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_group_join_and_postgres() {
    let (url, client) = fresh_db("readyz").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    produce_all(&kafka, "orders", orders(100, 2, 10)).await;
    let (proxy, proxied) = Proxy::in_front_of(&url).await;
    let port = free_port();
    let yaml = orders_config(kafka.bootstrap_servers(), &proxied, "orders", "g", "")
        .replace("pool_size: 4", "pool_size: 4\n  unready_after: 1s");
    let sink = Sink::start(&with_http(&yaml, port));

    // The listener is up before the group join, which takes seconds.
    let first = eventually(Duration::from_secs(30), "the server", || {
        get(port, "/readyz")
    })
    .await;
    assert_eq!(first.0, 503, "{}", first.1);
    assert!(first.1.contains("consumer group"), "{}", first.1);
    assert_eq!(get(port, "/healthz").await.map(|r| r.0), Some(200));
    eventually(Duration::from_secs(30), "ready", || async {
        (get(port, "/readyz").await?.0 == 200).then_some(())
    })
    .await;

    proxy.set_down(true);
    let down = eventually(
        Duration::from_secs(30),
        "not ready while Postgres is down",
        || async {
            let r = get(port, "/readyz").await?;
            (r.0 == 503).then_some(r.1)
        },
    )
    .await;
    assert!(down.contains("Postgres is unreachable"), "{down}");
    let (_, text) = get(port, "/metrics").await.unwrap();
    assert_eq!(
        total(&text, "sluice_ready"),
        0.0,
        "sluice_ready follows /readyz"
    );
    assert_eq!(
        get(port, "/healthz").await.map(|r| r.0),
        Some(200),
        "alive all the same"
    );
    proxy.set_down(false);
    eventually(Duration::from_secs(30), "ready again", || async {
        (get(port, "/readyz").await?.0 == 200).then_some(())
    })
    .await;
    let (_, text) = get(port, "/metrics").await.unwrap();
    assert_eq!(total(&text, "sluice_ready"), 1.0);
    sink.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_or_metrics() {
    const PASSWORD: &str = "S3cret-Pa55word";
    let (url, client) = fresh_db("secrets").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 2);
    let end = produce_all(&kafka, "orders", orders(500, 2, 20)).await;
    // The server trusts local connections, so any password is accepted.
    let with_password = url.replace("postgres@", &format!("postgres:{PASSWORD}@"));
    for format in ["text", "json"] {
        // Each run is its own group writing every record again: into the
        // same rows, all would be refused duplicates, which the poison-storm
        // breaker rightly halts on.
        client.batch_execute("TRUNCATE orders").await.unwrap();
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.yaml");
        let group = format!("g-{format}");
        let yaml = orders_config(kafka.bootstrap_servers(), "${PG_URL}", "orders", &group, "");
        std::fs::write(
            &path,
            format!(
                "{}\nlog:\n  format: {format}\n  level: debug\n",
                with_http(&yaml, port)
            ),
        )
        .unwrap();
        // A file, not a pipe: debug logs would fill a pipe nobody reads yet.
        let log_path = dir.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["run", "--config"])
            .arg(&path)
            .env("PG_URL", &with_password)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        eventually(Duration::from_secs(60), "the sink to drain", || async {
            let stored: i64 = client
                .query_one("SELECT coalesce(sum(next_offset), 0)::bigint FROM sluice.offsets WHERE group_id = $1", &[&group])
                .await
                .ok()?
                .get(0);
            (stored == end.values().sum::<i64>()).then_some(())
        })
        .await;
        let (_, metrics) = get(port, "/metrics").await.unwrap();
        assert!(!metrics.contains(PASSWORD));
        // SIGTERM: drains and exits 0.
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        let logs = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "{}",
            &logs[logs.len().saturating_sub(3000)..]
        );
        assert!(logs.contains("starting"), "{format} logs were written");
        assert!(
            !logs.contains(PASSWORD),
            "{format} logs leak the password:\n{logs}"
        );
        if format == "json" {
            let lines: Vec<serde_json::Value> = logs
                .lines()
                .map(|l| serde_json::from_str(l).expect("every line is JSON"))
                .collect();
            let assigned = lines
                .iter()
                .find(|l| l["fields"]["message"] == "partition assigned")
                .expect("assigned");
            assert_eq!(assigned["fields"]["topic"], "orders");
            assert!(assigned["fields"]["partition"].is_number());
        }
    }
}

/// The partitions `registry` exports a lag series for.
fn lag_series(registry: &prometheus::Registry) -> std::collections::BTreeSet<String> {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "sluice_partition_lag_records")
        .flat_map(|f| f.get_metric().iter())
        .filter_map(|m| {
            m.get_label()
                .iter()
                .find(|l| l.name() == "partition")
                .map(|l| l.value().to_string())
        })
        .collect()
}

/// A partition's lag series leaves a replica with the partition, so the
/// sum over replicas (what the autoscaler reads) counts each partition once
/// through a rebalance. The lag watcher sets the gauges under the same lock
/// the worker's end removes them with, so a revoked series never returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_series_move_with_their_partitions() {
    let (url, client) = fresh_db("lag_moves").await;
    client.batch_execute(ORDERS_TABLE).await.unwrap();
    let kafka = kafka("orders", 4);
    let first = produce_all(&kafka, "orders", orders(4_000, 4, 40)).await;
    let yaml = orders_config(kafka.bootstrap_servers(), &url, "orders", "lagmove", "");
    let a = Sink::start(&yaml);
    wait_drained(&client, "orders", &first, Duration::from_secs(60)).await;
    let all: std::collections::BTreeSet<String> = (0..4).map(|p| p.to_string()).collect();
    eventually(Duration::from_secs(30), "A's lag series", || async {
        (lag_series(&a.registry) == all).then_some(())
    })
    .await;
    let b = Sink::start(&yaml);
    eventually(
        Duration::from_secs(60),
        "the partitions split, each series once",
        || async {
            let (sa, sb) = (lag_series(&a.registry), lag_series(&b.registry));
            let split = !sb.is_empty()
                && sa.is_disjoint(&sb)
                && sa
                    .union(&sb)
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
                    == all;
            split.then_some(())
        },
    )
    .await;
    let end = produce_all(&kafka, "orders", orders(8_000, 4, 40).split_off(4_000)).await;
    wait_drained(&client, "orders", &end, Duration::from_secs(60)).await;
    // Two lag passes later (one every health::INTERVAL), still each series
    // once: an observation over time, not a wait for a condition.
    for _ in 0..2 {
        let before = (lag_series(&a.registry), lag_series(&b.registry));
        tokio::time::sleep(sluice::health::INTERVAL + Duration::from_millis(100)).await;
        assert_eq!((lag_series(&a.registry), lag_series(&b.registry)), before);
        assert!(before.0.is_disjoint(&before.1), "{before:?}");
    }
    assert_orders_exact(&client, 8_000).await;
    b.stop().await.expect("clean stop");
    a.stop().await.expect("clean stop");
}
