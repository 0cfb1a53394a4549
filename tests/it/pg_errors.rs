//! When Postgres says no (issue #17): a wrong password, a port nothing
//! listens on and a setting the server refuses are each named by `check`
//! and by `run`'s start-up with the server's own words (message, SQLSTATE,
//! hint) or the OS error, under the config field that caused them; never
//! tokio-postgres' bare "db error" or deadpool's "Error occurred while
//! creating a new object".

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sluice::config::Config;
use sluice::embedded::postgres::{EmbeddedPostgres, Options};
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;

use crate::check::{check_fails_naming, check_with};
use crate::harness::*;

const RIGHT_PASSWORD: &str = "right-pw";

/// A server that asks for a password over TCP (the shared one trusts
/// everyone); the harness reaches it over the unix socket.
fn password_server() -> &'static EmbeddedPostgres {
    static SERVER: OnceLock<EmbeddedPostgres> = OnceLock::new();
    SERVER.get_or_init(|| {
        tokio::task::block_in_place(|| {
            EmbeddedPostgres::start_with(Options {
                settings: vec![("password_encryption".into(), "'scram-sha-256'".into())],
                hba: Some(
                    "local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n".into(),
                ),
                files: Vec::new(),
            })
            .expect("PostgreSQL with password authentication starts")
        })
    })
}

fn yaml(brokers: &str, url: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: g
postgres:
  url: "{url}"
routes:
  - topic: orders
    table: orders
    columns:
      k: /k
"#
    )
}

/// Neither library's bare words reach the user.
fn assert_no_bare_words(text: &str) {
    for bare in ["db error", "Error occurred while creating a new object"] {
        assert!(!text.contains(bare), "{bare:?} shown:\n{text}");
    }
}

/// `sluice run` in-process with `config` (validated or not) must stop at
/// start-up; its error, which must start with `field: ` and name `needles`.
async fn run_refuses(mut config: Config, field: &str, needles: &[&str]) -> String {
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        sluice::app::run(
            config,
            &prometheus::Registry::new(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("sluice run stops at start-up, not later or never");
    let error = outcome
        .expect_err("sluice run must refuse to start")
        .to_string();
    assert!(
        error.starts_with(&format!("{field}: ")),
        "run's error is not attributed to {field}: {error}"
    );
    for needle in needles {
        assert!(
            error.contains(needle),
            "run's error does not name {needle:?}: {error}"
        );
    }
    assert_no_bare_words(&error);
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_named_with_the_servers_message_and_sqlstate() {
    let pg = password_server();
    let admin = connect(&pg.admin_url("postgres")).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE sluice_pw LOGIN PASSWORD '{RIGHT_PASSWORD}'"
        ))
        .await
        .unwrap();
    let kafka = kafka("orders", 1);
    let url = format!(
        "postgres://sluice_pw:not-the-password@127.0.0.1:{}/postgres",
        pg.port()
    );
    let yaml = yaml(kafka.bootstrap_servers(), &url);
    let needles = [
        "password authentication failed for user \"sluice_pw\"",
        "SQLSTATE 28P01",
    ];
    let text = check_fails_naming(&yaml, &needles);
    assert!(
        text.contains("error: postgres.url: cannot connect to postgres://sluice_pw:***@"),
        "check does not attribute it to postgres.url:\n{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");
    assert_no_bare_words(&text);
    let config = Config::from_yaml(&yaml, |_| None).unwrap();
    let error = run_refuses(config, "postgres.url", &needles).await;
    assert!(!error.contains("not-the-password"), "{error}");

    // No password at all: tokio-postgres' "password missing", explained.
    let yaml = yaml.replace(":not-the-password@", "@");
    let needles = [&format!(
        "the server at 127.0.0.1:{} asks for the password of user sluice_pw, and postgres.url has none",
        pg.port()
    )[..]];
    let text = check_fails_naming(&yaml, &needles);
    assert!(text.contains("error: postgres.url: "), "{text}");
    let config = Config::from_yaml(&yaml, |_| None).unwrap();
    run_refuses(config, "postgres.url", &needles).await;
}

/// A shared buffer the test's tracing subscriber writes to.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Nothing listening: `check` names host:port and the OS error; `run`
/// waits for the server (it may be starting too, docs/operations.md), and
/// its warnings say the same rather than "error connecting to server".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_nothing_listens_on_is_named_with_the_os_error() {
    let port = free_port();
    let kafka = kafka("orders", 1);
    let url = format!("postgres://sluice@127.0.0.1:{port}/app");
    let yaml = yaml(kafka.bootstrap_servers(), &url);
    let refused = format!("127.0.0.1:{port}: Connection refused");
    let text = check_fails_naming(&yaml, &[&refused]);
    assert!(
        text.contains(&format!("error: postgres.url: cannot connect to {url}")),
        "check does not attribute it to postgres.url:\n{text}"
    );
    assert_no_bare_words(&text);

    let mut config = Config::from_yaml(&yaml, |_| None).unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.retry.initial_backoff = Duration::from_millis(50);
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let token = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let run = tokio::spawn(
        {
            let (token, registry) = (token.clone(), registry.clone());
            async move { sluice::app::run(config, &registry, token).await }
        }
        .with_subscriber(subscriber),
    );
    let warning = eventually(Duration::from_secs(30), "run's retry warning", || {
        let text = logs.text();
        async move {
            text.lines()
                .find(|l| l.contains("Postgres is not reachable yet"))
                .map(str::to_owned)
        }
    })
    .await;
    assert!(warning.contains(&refused), "{warning}");
    assert!(warning.contains("postgres.url"), "{warning}");
    assert!(
        !run.is_finished(),
        "run gave up on a server that may start later"
    );
    assert!(metric(&registry, "sluice_pg_errors_total") >= 1.0);
    token.cancel();
    run.await
        .unwrap()
        .expect("run stops cleanly when shut down while waiting");
}

/// Postgres' maximum for its millisecond timeouts (INT_MAX ms).
const PG_MAX_MS: u64 = 2_147_483_647;

/// `statement_timeout: 600h` (25 days) is beyond what Postgres takes:
/// `check` refuses it before connecting, and should a value reach the
/// server anyway (here: a config not validated), `check` and `run` show
/// the server's refusal under the field, not under postgres.url. A
/// setting in the URL's own `options` stays the URL's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_the_server_refuses_is_named_under_its_field() {
    let (url, client) = fresh_db("pg_errors_settings").await;
    client
        .batch_execute("CREATE TABLE orders (k text)")
        .await
        .unwrap();
    let kafka = kafka("orders", 1);
    let good = yaml(kafka.bootstrap_servers(), &url);
    for (field, value) in [("statement_timeout", "600h"), ("lock_timeout", "597h")] {
        let bad = good.replace(
            &format!("  url: \"{url}\"\n"),
            &format!("  url: \"{url}\"\n  {field}: {value}\n"),
        );
        let (code, text) = tokio::task::block_in_place(|| check_with(&[], &bad));
        assert_eq!(code, 64, "validation refuses it before connecting:\n{text}");
        assert!(
            text.contains(&format!("error: postgres.{field}: is "))
                && text.contains(&format!("at most {PG_MAX_MS}ms")),
            "{text}"
        );

        // Past validation, the server's refusal is the field's.
        let mut config = Config::from_yaml(&good, |_| None).unwrap();
        let too_long = Duration::from_secs(600 * 3600);
        match field {
            "statement_timeout" => config.postgres.statement_timeout = too_long,
            _ => config.postgres.lock_timeout = too_long,
        }
        let said = format!("invalid value for parameter \"{field}\": \"2160000000\"");
        let needles = [
            said.as_str(),
            "SQLSTATE 22023",
            "hint: Value exceeds integer range.",
        ];
        let problems = sluice::check::postgres_problems(&config).await;
        let problem = problems
            .iter()
            .find(|p| p.path == format!("postgres.{field}"))
            .unwrap_or_else(|| panic!("no problem under postgres.{field}: {problems:?}"));
        for needle in needles {
            assert!(problem.message.contains(needle), "{problem:?}");
        }
        assert_no_bare_words(&problem.message);
        run_refuses(config, &format!("postgres.{field}"), &needles).await;
    }

    // The same refusal at connection time, from the URL's options.
    let in_url = format!("{url}?options=-c%20statement_timeout%3D600h");
    let yaml = yaml(kafka.bootstrap_servers(), &in_url);
    let needles = [
        "invalid value for parameter \"statement_timeout\": \"600h\"",
        "SQLSTATE 22023",
        "hint: Value exceeds integer range.",
    ];
    let text = check_fails_naming(&yaml, &needles);
    assert!(text.contains("error: postgres.url: "), "{text}");
    assert_no_bare_words(&text);
    let config = Config::from_yaml(&yaml, |_| None).unwrap();
    run_refuses(config, "postgres.url", &needles).await;
}

/// A role that may not create sluice's schema: `sluice migrate` and `run`'s
/// start-up (auto_migrate) show the server's refusal, not "db error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_migration_shows_the_servers_message() {
    let (url, client) = fresh_db("pg_errors_migrate").await;
    client
        .batch_execute(
            "CREATE ROLE sluice_nomigrate LOGIN; CREATE TABLE orders (k text); \
             GRANT SELECT, INSERT ON orders TO sluice_nomigrate",
        )
        .await
        .unwrap();
    let database = url.rsplit('/').next().unwrap();
    let url = url.replace("postgres@", "sluice_nomigrate@");
    let kafka = kafka("orders", 1);
    let yaml = yaml(kafka.bootstrap_servers(), &url);
    let denied = format!("permission denied for database {database} (SQLSTATE 42501)");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["migrate", "--config"])
            .arg(&path)
            .output()
            .expect("run sluice migrate")
    });
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("migration failed: {denied}")),
        "{text}"
    );
    assert_no_bare_words(&text);

    let config = Config::from_yaml(&yaml, |_| None).unwrap();
    run_refuses(
        config,
        "postgres.auto_migrate",
        &[&denied, "run `sluice migrate` as a role that has it"],
    )
    .await;
}
