//! `sluice doctor` (#15) against the harness's real Postgres: each
//! deliberately bad setting is found with its evidence (the value seen),
//! and a well-set database has no warning of its own.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice::config::Config;
use sluice::ops::doctor_command;

use crate::harness::*;

/// Warnings the shared test server may earn whatever the database: it runs
/// with fsync and full_page_writes off for speed (embedded::postgres), and
/// its checkpoint counters count the load of every test sharing it.
const SERVER_WIDE: [&str; 3] = ["fsync", "full_page_writes", "checkpoints"];

fn config_yaml(url: &str, routes: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "127.0.0.1:9"
  group_id: doctor
postgres:
  url: "{url}"
routes:
{routes}"#
    )
}

/// `doctor_command` as JSON, parsed; and whether nothing warned.
async fn doctor(yaml: &str, replicas: u32) -> (Value, bool) {
    let config = Config::from_yaml(yaml, |_| None).expect("valid config");
    let (text, healthy) = doctor_command(&config, replicas, true)
        .await
        .expect("doctor runs");
    (serde_json::from_str(&text).expect("JSON"), healthy)
}

fn findings(report: &Value) -> &Vec<Value> {
    report["findings"].as_array().expect("findings")
}

/// The finding of `check` (on `target`, when given) with `severity`.
fn find<'r>(report: &'r Value, check: &str, target: Option<&str>, severity: &str) -> &'r Value {
    findings(report)
        .iter()
        .find(|f| {
            f["check"] == check
                && f["severity"] == severity
                && target.is_none_or(|t| f["target"] == t)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {severity} {check} finding on {target:?}:\n{}",
                serde_json::to_string_pretty(report).unwrap()
            )
        })
}

fn evidence(finding: &Value) -> &str {
    finding["evidence"].as_str().expect("evidence")
}

fn assert_names(finding: &Value, needles: &[&str]) {
    for needle in needles {
        assert!(
            evidence(finding).contains(needle),
            "evidence does not show {needle:?}: {finding:#}"
        );
    }
}

/// `sluice doctor <args> --config <yaml>`: exit code and stdout.
fn cli(args: &[&str], yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("doctor")
        .args(args)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run sluice doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_bad_setting_with_its_evidence() {
    let (url, client) = fresh_db("doctor_bad").await;
    client
        .batch_execute(
            "CREATE TABLE churn (id text, v integer, n integer);
             ALTER TABLE churn SET (autovacuum_enabled = false);
             CREATE INDEX churn_v ON churn (v);
             CREATE INDEX churn_v_again ON churn (v);
             CREATE TABLE events (at timestamptz NOT NULL, k integer) PARTITION BY RANGE (at);
             CREATE TABLE events_2020 PARTITION OF events
                 FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');",
        )
        .await
        .unwrap();
    // Upsert keyed on id, with no unique index on it: config validation
    // allows it (only `check` and start-up read the catalog).
    let yaml = config_yaml(
        &url,
        "  - topic: churn
    table: churn
    mode: upsert
    key: [id]
    columns: {id: /id, v: /v, n: /n}
  - topic: events
    table: events
    columns: {at: /at, k: /k}
",
    );
    // A session left idle in its transaction.
    let idle = connect(&url).await;
    let pid: i32 = idle
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    idle.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let max: String = client
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get(0);

    // 1000 replicas × pool_size 8 is far beyond any max_connections.
    let session = format!("pid {pid}");
    let (yaml_ref, session_ref) = (&yaml, &session);
    let report = eventually(
        Duration::from_secs(60),
        "the idle-in-transaction session to be reported",
        move || async move {
            let (report, healthy) = doctor(yaml_ref, 1000).await;
            assert!(!healthy);
            let seen = findings(&report).iter().any(|f| {
                f["check"] == "idle_in_transaction" && f["target"] == session_ref.as_str()
            });
            seen.then_some(report)
        },
    )
    .await;

    let idle_finding = find(&report, "idle_in_transaction", Some(&session), "warning");
    assert_names(
        idle_finding,
        &[&session, "idle in transaction for", "SELECT 1"],
    );
    assert!(idle_finding["advice"]
        .as_str()
        .unwrap()
        .contains(&format!("pg_terminate_backend({pid})")));
    assert_names(
        find(&report, "autovacuum", Some("public.churn"), "warning"),
        &["autovacuum_enabled=false"],
    );
    assert_names(
        find(&report, "duplicate_index", Some("public.churn"), "warning"),
        &["churn_v and churn_v_again", "(v)"],
    );
    assert_names(
        find(&report, "upsert_key", Some("public.churn"), "warning"),
        &["key (id)", "unique indexes: none"],
    );
    assert_names(
        find(&report, "max_connections", None, "warning"),
        &[
            &format!("max_connections={max};"),
            "1000 replica(s) × pool_size 8",
        ],
    );
    assert_names(
        find(&report, "partitions", Some("public.events"), "warning"),
        &[
            "range on at (timestamp with time zone)",
            "goes to no partition",
        ],
    );
    assert!(report["warnings"].as_u64().unwrap() >= 6, "{report:#}");

    // The binary: exit 1 on warnings, text and --json.
    let (code, text) = tokio::task::block_in_place(|| cli(&["--replicas", "1000"], &yaml));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("WARNING  max_connections"), "{text}");
    assert!(
        text.contains("WARNING  autovacuum [public.churn]"),
        "{text}"
    );
    let (code, json) = tokio::task::block_in_place(|| cli(&["--json"], &yaml));
    assert_eq!(code, 1, "{json}");
    let parsed: Value = serde_json::from_str(&json).expect("--json prints JSON");
    assert_eq!(parsed["replicas"], 1);
    find(&parsed, "max_connections", None, "ok");
    idle.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_warns_only_about_the_servers_own_settings_on_a_well_set_database() {
    let (url, client) = fresh_db("doctor_good").await;
    client
        .batch_execute(
            "CREATE TABLE accounts (id text PRIMARY KEY, balance integer);
             CREATE TABLE events (at timestamptz NOT NULL, k integer) PARTITION BY RANGE (at);
             CREATE TABLE events_now PARTITION OF events
                 FOR VALUES FROM (now() - interval '1 day') TO (now() + interval '7 days');",
        )
        .await
        .unwrap();
    let yaml = config_yaml(
        &url,
        "  - topic: accounts
    table: accounts
    mode: upsert
    key: [id]
    columns: {id: /id, balance: /balance}
  - topic: events
    table: events
    columns: {at: /at, k: /k}
",
    );
    let (report, _) = doctor(&yaml, 1).await;
    for f in findings(&report) {
        if f["severity"] == "warning" {
            assert!(
                SERVER_WIDE.contains(&f["check"].as_str().unwrap()) && f["target"].is_null(),
                "a warning that is not the test server's own: {f:#}"
            );
        }
    }
    // The test server's own, as it is set up (embedded::postgres).
    assert_names(find(&report, "fsync", None, "warning"), &["fsync=off"]);
    assert_names(
        find(&report, "full_page_writes", None, "warning"),
        &["full_page_writes=off"],
    );
    assert_names(
        find(&report, "upsert_key", Some("public.accounts"), "ok"),
        &["accounts_pkey (id)"],
    );
    assert_names(
        find(&report, "partitions", Some("public.events"), "ok"),
        &["goes to public.events_now"],
    );
    find(&report, "vacuum", Some("public.accounts"), "ok");
    find(&report, "vacuum", Some("public.events_now"), "ok");
    find(&report, "indexes", Some("public.accounts"), "ok");
    find(&report, "sessions", None, "ok");
    find(&report, "max_connections", None, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_exits_2_naming_an_unreachable_postgres() {
    let port = free_port();
    let yaml = config_yaml(
        &format!("postgres://sluice@127.0.0.1:{port}/none?sslmode=disable&connect_timeout=5"),
        "  - topic: t
    table: t
    columns: {id: /id}
",
    );
    let (code, text) = tokio::task::block_in_place(|| cli(&[], &yaml));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let (code, text) = tokio::task::block_in_place(|| cli(&[], "kafka: {}\n"));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("invalid configuration"), "{text}");
}

/// Through a transaction-pooling PgBouncer (as sluice is often deployed)
/// doctor works: only unnamed statements, nothing kept on a server
/// connection between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_runs_through_pgbouncer_transaction_pooling() {
    let db = crate::pgbouncer::target_db("doctor_bouncer", crate::pgbouncer::Via::PgBouncer).await;
    db.client
        .batch_execute("CREATE TABLE accounts (id text PRIMARY KEY, balance integer)")
        .await
        .unwrap();
    let yaml = config_yaml(
        &db.url,
        "  - topic: accounts
    table: accounts
    mode: upsert
    key: [id]
    columns: {id: /id, balance: /balance}
",
    );
    // Twice: the second run reuses server connections the first one left.
    for _ in 0..2 {
        let (report, _) = doctor(&yaml, 1).await;
        assert_names(
            find(&report, "upsert_key", Some("public.accounts"), "ok"),
            &["accounts_pkey (id)"],
        );
    }
    db.assert_pooler_clean();
}
