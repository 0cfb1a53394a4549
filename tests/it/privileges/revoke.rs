//! One privilege taken away at a time, after the drain of the parent test:
//! what `check` and start-up say, and that the GRANT they print fixes it.

use std::time::Duration;

use prometheus::Registry;
use sluice::app::{self, AppError};
use sluice::config::Config;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::check::check_with;

pub async fn check(yaml: &str) -> (i32, String) {
    let yaml = yaml.to_owned();
    tokio::task::spawn_blocking(move || check_with(&[], &yaml))
        .await
        .unwrap()
}

/// The `error: <path>: <message>` lines of a check's output.
fn errors(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("error: ")).collect()
}

/// Starts `sluice run` in-process; it must refuse to start. Returns its
/// problems as `check` prints them.
async fn run_refuses(yaml: &str) -> Vec<String> {
    let config = Config::from_yaml(yaml, |_| None).expect("valid config");
    let registry = Registry::new();
    let run = app::run(config, &registry, CancellationToken::new());
    match tokio::time::timeout(Duration::from_secs(60), run).await {
        Ok(Err(AppError::Plan(problems))) => problems
            .iter()
            .map(|p| format!("error: {}: {}", p.path, p.message))
            .collect(),
        other => panic!("run did not refuse with plan problems: {other:?}"),
    }
}

/// Takes one privilege away at a time: check reports exactly the problems
/// expected (path and text), run refuses with the same lines, and the
/// GRANTs check prints restore the role until check passes again.
pub async fn revoke_one_at_a_time(admin: &Client, yaml: &str, fill: &dyn Fn(&str) -> String) {
    // (what is taken away, its problems' path, text each problem holds)
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "REVOKE UPDATE ON app.accounts FROM {run}",
            &["routes[1].table"],
            "lacks UPDATE on table app.accounts",
        ),
        (
            "REVOKE INSERT ON sluice.dead_letters FROM {run}",
            &["postgres.state_schema"],
            "lacks INSERT on table sluice.dead_letters",
        ),
        (
            "REVOKE DELETE ON app.accounts FROM {run}",
            &["routes[1].table"],
            "lacks DELETE on table app.accounts",
        ),
        (
            "REVOKE TEMPORARY ON DATABASE {db} FROM {run}",
            &["routes[1].write_method"],
            "lacks TEMPORARY on database",
        ),
        (
            "REVOKE USAGE ON SEQUENCE app.events_id_seq FROM {run}",
            &["routes[2].table"],
            "lacks USAGE on sequence app.events_id_seq, which the default of column id",
        ),
        (
            "REVOKE USAGE ON SEQUENCE sluice.dead_letters_id_seq FROM {run}",
            &["postgres.state_schema"],
            "lacks USAGE on sequence sluice.dead_letters_id_seq",
        ),
        (
            "REVOKE SELECT ON sluice.halts FROM {run}",
            &["postgres.state_schema"],
            "lacks SELECT on table sluice.halts",
        ),
        (
            "REVOKE SELECT ON sluice.schema_migrations FROM {run}",
            &["postgres.state_schema"],
            "lacks SELECT on table sluice.schema_migrations",
        ),
        (
            "REVOKE USAGE ON SCHEMA sluice FROM {run}",
            &["postgres.state_schema"],
            "lacks USAGE on schema sluice",
        ),
        // A column grant suffices; the fix names the columns still missing.
        (
            "REVOKE UPDATE ON app.accounts FROM {run}; GRANT UPDATE (balance) ON app.accounts TO {run}",
            &["routes[1].table"],
            "lacks UPDATE on columns status, version of table app.accounts",
        ),
        (
            "REVOKE USAGE ON SCHEMA app FROM {run}",
            &["routes[0].table", "routes[1].table", "routes[2].table", "routes[3].table"],
            "lacks USAGE on schema app",
        ),
    ];
    for (index, (revoke, paths, text)) in cases.iter().enumerate() {
        admin.batch_execute(&fill(revoke)).await.unwrap();
        let (code, output) = check(yaml).await;
        assert_ne!(code, 0, "{revoke}: check passed:\n{output}");
        let lines = errors(&output);
        let found: Vec<&str> = lines
            .iter()
            .map(|l| l["error: ".len()..].split_once(": ").map_or("", |(p, _)| p))
            .collect();
        assert_eq!(found, *paths, "{revoke}:\n{output}");
        for line in &lines {
            assert!(line.contains(text), "{revoke}: {line}");
            assert!(line.contains(&fill("TO {run}")), "{revoke}: {line}");
        }
        // Start-up says the same; twice is enough to show it.
        if index < 2 {
            assert_eq!(run_refuses(yaml).await, lines, "{revoke}");
        }
        for line in lines {
            let (_, grant) = line.rsplit_once("grant it: ").expect("a GRANT to run");
            admin.batch_execute(grant).await.expect(grant);
        }
        let (code, output) = check(yaml).await;
        assert_eq!(code, 0, "after the printed GRANTs of {revoke}:\n{output}");
    }
}
