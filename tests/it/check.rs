//! `sluice check`: every problem is named, and a good config passes.

use std::process::Command;

use crate::harness::*;

/// Runs `sluice check` on `yaml`; returns (exit code, stderr + stdout).
fn check(yaml: &str) -> (i32, String) {
    check_with(&[], yaml)
}

/// `sluice check <flags> --config <yaml>`.
pub fn check_with(flags: &[&str], yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .args(flags)
        .arg("--config")
        .arg(&path)
        .env_remove("SLUICE_TEST_UNSET_PASSWORD")
        .output()
        .expect("run sluice check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `sluice check` must fail naming every one of `needles`; its output.
/// (Runs the binary on a blocking section: tests are multi-threaded.)
pub fn check_fails_naming(yaml: &str, needles: &[&str]) -> String {
    let (code, text) = tokio::task::block_in_place(|| check_with(&[], yaml));
    assert_ne!(code, 0, "check passed but should fail:\n{text}");
    for needle in needles {
        assert!(
            text.contains(needle),
            "check does not name {needle:?}:\n{text}"
        );
    }
    text
}

/// `sluice check` must pass; its output.
pub fn check_passes(yaml: &str) -> String {
    let (code, text) = tokio::task::block_in_place(|| check_with(&[], yaml));
    assert_eq!(code, 0, "check failed:\n{text}");
    text
}

/// `sluice run` in-process must stop at start-up (not retry for ever)
/// with an error naming every one of `needles`; the error.
pub async fn run_fails_naming(yaml: &str, needles: &[&str]) -> String {
    // Tests run side by side: any free port for the HTTP server.
    let yaml = format!("{yaml}\nhttp:\n  listen: \"127.0.0.1:0\"\n");
    let config = sluice::config::Config::from_yaml(&yaml, |_| None).expect("valid config");
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        sluice::app::run(
            config,
            &prometheus::Registry::new(),
            tokio_util::sync::CancellationToken::new(),
        ),
    )
    .await
    .expect("sluice run stops at start-up, not retries for ever");
    let error = outcome
        .expect_err("sluice run must refuse to start")
        .to_string();
    for needle in needles {
        assert!(
            error.contains(needle),
            "run's error does not name {needle:?}: {error}"
        );
    }
    error
}

fn assert_fails_naming(yaml: &str, needles: &[&str]) {
    let (code, text) = check(yaml);
    assert_ne!(code, 0, "check passed but should fail:\n{text}");
    for needle in needles {
        assert!(
            text.contains(needle),
            "output does not name {needle:?}:\n{text}"
        );
    }
}

const BASE: &str = r#"
kafka:
  brokers: "BROKERS"
  group_id: g
postgres:
  url: "URL"
routes:
  - topic: orders
    table: orders
    columns:
      k: /k
      seq: /seq
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_problem_and_passes_a_good_config() {
    let (url, client) = fresh_db("check").await;
    client
        .batch_execute(
            "CREATE TABLE orders (k text, seq bigint, spot point);
             -- What an unqualified CREATE TABLE does for a role named like a
             -- schema on the search_path (\"$user\", public).
             CREATE SCHEMA sluice_app; CREATE TABLE sluice_app.invoices (k text)",
        )
        .await
        .unwrap();
    let kafka = kafka("orders", 2);
    let base = BASE
        .replace("BROKERS", kafka.bootstrap_servers())
        .replace("URL", &url);
    let blocking = tokio::task::spawn_blocking(move || {
        let (code, text) = check(&base);
        assert_eq!(code, 0, "a good config passes:\n{text}");

        assert_fails_naming(
            &base.replace("group_id: g", "group_id: g\n  brokrs: x"),
            &["brokrs"],
        );
        assert_fails_naming(
            &format!("{base}batch:\n  linger: fast\n"),
            &["linger", "invalid duration \"fast\""],
        );
        assert_fails_naming(
            &base.replace(
                &url,
                &url.replace("postgres@", "postgres:${SLUICE_TEST_UNSET_PASSWORD}@"),
            ),
            &["SLUICE_TEST_UNSET_PASSWORD"],
        );
        // Two problems in one run: both are reported.
        assert_fails_naming(
            &base.replace("seq: /seq", "seq: /seq\n      nope: /x\n      spot: /spot"),
            &[
                "routes[0].columns.nope",
                "\"nope\" does not exist",
                "routes[0].columns.spot",
                "point",
            ],
        );
        assert_fails_naming(
            &base.replace("topic: orders", "topic: missing-topic"),
            &["missing-topic"],
        );
        assert_fails_naming(
            &base.replace("table: orders", "table: no_such_table"),
            &["no_such_table"],
        );
        // A table of that name in another schema is named, with the fix.
        assert_fails_naming(
            &base.replace("table: orders", "table: invoices"),
            &[
                "routes[0].table",
                "public.invoices does not exist, but sluice_app.invoices does",
                "ALTER TABLE sluice_app.invoices SET SCHEMA public",
            ],
        );
    });
    blocking.await.unwrap();
}

/// `check --offline` validates the file alone: nothing it names is contacted
/// (the broker and database here do not exist), and a bad field still fails
/// with exit 64 naming it.
#[test]
fn check_offline_validates_without_connecting() {
    let good = BASE
        .replace("BROKERS", "nowhere.invalid:9092")
        .replace("URL", "postgres://sluice@nowhere.invalid:1/app");
    let run = |yaml: &str| check_with(&["--offline"], yaml);
    let (code, text) = run(&good);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("not contacted"), "{text}");
    let (code, text) = run(&format!("{good}batch:\n  linger: fast\n"));
    assert_eq!(code, 64, "{text}");
    assert!(text.contains("batch.linger"), "{text}");

    // Without --config the file comes from SLUICE_CONFIG (issue #17).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from-env.yaml");
    std::fs::write(&path, format!("{good}batch:\n  linger: 1S\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["check", "--offline"])
        .env("SLUICE_CONFIG", &path)
        .output()
        .expect("run sluice check");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(
        text.contains("batch.linger") && text.contains(r#"write "s""#),
        "the file named by SLUICE_CONFIG was read: {text}"
    );
}

/// Hardening #14 (the check half): a NOT NULL column with no default that
/// no mapping fills makes Postgres refuse every record — a poison storm
/// that empties the topic into the dead-letter table. `check` (and start-
/// up, which plans the same way) names the column; a default, an identity
/// or a mapping each make it fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_an_unfilled_not_null_column() {
    let (url, client) = fresh_db("check_not_null").await;
    client
        .batch_execute(
            "CREATE TABLE orders (k text, seq bigint, region text NOT NULL, \
             id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    let kafka = kafka("orders", 1);
    let base = BASE
        .replace("BROKERS", kafka.bootstrap_servers())
        .replace("URL", &url);
    let blocking = tokio::task::spawn_blocking(move || {
        let (code, text) = check(&base);
        assert_ne!(code, 0, "{text}");
        assert!(text.contains("routes[0].columns"), "{text}");
        assert!(text.contains("\"region\""), "{text}");
        assert!(text.contains("NOT NULL with no default"), "{text}");
        assert!(
            !text.contains("\"id\"") && !text.contains("\"at\""),
            "{text}"
        );
        let (code, text) = check(&base.replace("seq: /seq", "seq: /seq\n      region: /region"));
        assert_eq!(code, 0, "mapped, it passes:\n{text}");
    });
    blocking.await.unwrap();
}
