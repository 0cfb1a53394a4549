//! Least privilege (docs/operations.md, "Least privilege: two roles"):
//! `sluice migrate` runs as an owner role, `sluice run` as a role granted
//! exactly the documented set, on a database where PUBLIC may not even
//! connect. It drains an ordered append, an upsert with a version guard and
//! tombstones, a keyed append into a table with a serial column, a dead
//! letter and a halt. Then one privilege at a time is taken away: `check`
//! names it (path, table, privilege) and the GRANT it prints restores it;
//! start-up refuses with the same message.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use sluice::embedded::kafka::produce;
use tokio_postgres::Client;

use crate::harness::*;
use revoke::{check, revoke_one_at_a_time};

mod revoke;

/// The targets, owned by the superuser (standing for the application's
/// own migrations): sluice's owner role owns only the state schema.
const TARGETS: &str = "
CREATE SCHEMA app;
CREATE TABLE app.orders (
    k text NOT NULL, seq bigint NOT NULL, amount numeric(10,2),
    src_partition integer NOT NULL, src_offset bigint NOT NULL);
CREATE TABLE app.accounts (
    id bigint PRIMARY KEY, version bigint NOT NULL, balance bigint, status text);
CREATE TABLE app.events (
    id bigserial PRIMARY KEY, src_partition integer NOT NULL, src_offset bigint NOT NULL,
    body text, UNIQUE (src_partition, src_offset));
CREATE TABLE app.halting (body text);";

/// What the superuser grants: connecting (PUBLIC may not), CREATE for the
/// owner's state schema, and the runtime role's share of the targets.
const ADMIN_GRANTS: &str = "
REVOKE ALL ON DATABASE {db} FROM PUBLIC;
GRANT CONNECT, CREATE ON DATABASE {db} TO {owner};
GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {run};
GRANT USAGE ON SCHEMA app TO {run};
GRANT INSERT ON app.orders TO {run};
GRANT SELECT, INSERT, UPDATE, DELETE ON app.accounts TO {run};
GRANT INSERT ON app.events TO {run};
GRANT USAGE ON SEQUENCE app.events_id_seq TO {run};
GRANT INSERT ON app.halting TO {run};";

/// What the owner grants after `sluice migrate`, on what it created.
const OWNER_GRANTS: &str = "
GRANT USAGE ON SCHEMA sluice TO {run};
GRANT SELECT, INSERT, UPDATE ON sluice.offsets TO {run};
GRANT SELECT, INSERT, UPDATE, DELETE ON sluice.halts TO {run};
GRANT INSERT ON sluice.dead_letters TO {run};
GRANT USAGE ON SEQUENCE sluice.dead_letters_id_seq TO {run};
GRANT SELECT ON sluice.schema_migrations TO {run};";

fn config(brokers: &str, url: &str) -> String {
    format!(
        r#"
kafka:
  brokers: "{brokers}"
  group_id: g
  librdkafka: {{ session.timeout.ms: "6000", heartbeat.interval.ms: "300" }}
postgres: {{ url: "{url}", pool_size: 4 }}
batch: {{ max_rows: 500, linger: 20ms }}
http: {{ listen: "127.0.0.1:0" }}
routes:
  - topic: orders
    table: app.orders
    columns: {{ k: /k, seq: /seq, amount: /amount, src_partition: $partition, src_offset: $offset }}
  - topic: accounts
    table: app.accounts
    mode: upsert
    key: [id]
    version: version
    delete_on_tombstone: true
    columns: {{ id: $key/id, version: /version, balance: /balance, status: /status }}
  - topic: events
    table: app.events
    write_method: insert
    key: [src_partition, src_offset]
    columns: {{ src_partition: $partition, src_offset: $offset, body: /body }}
  - topic: halting
    table: app.halting
    write_method: insert
    on_error: stop
    columns: {{ body: /body }}
"#
    )
}

/// (version, balance, status) per account id.
type Accounts = BTreeMap<i64, (i64, i64, String)>;

/// Per key, in offset order: versions 1 and 2; then (the second part,
/// produced once the first is written, so that the version guard and the
/// deletes meet stored rows) version 1 again (stale, skipped), for every
/// third key a tombstone, and for every sixth a re-insert at version 3.
/// Keys interleave, so batches mix them.
fn account_events() -> ([Produced; 2], Accounts) {
    let mut events = [Produced::new(), Produced::new()];
    let mut model = Accounts::new();
    let row = |v: i64, id: i64| (v, id * 100 + v, format!("s{v}"));
    for step in 0..5 {
        for id in 0..40i64 {
            let event = match step {
                0 => Some(row(1, id)),
                1 => Some(row(2, id)),
                2 => Some(row(1, id)),
                3 if id % 3 == 0 => None,
                4 if id % 6 == 0 => Some(row(3, id)),
                _ => continue,
            };
            match &event {
                None => {
                    model.remove(&id);
                }
                Some(r) if model.get(&id).is_none_or(|held| held.0 < r.0) => {
                    model.insert(id, r.clone());
                }
                Some(_) => {}
            }
            let value = event.map(|(v, b, s)| {
                format!(r#"{{"version":{v},"balance":{b},"status":"{s}"}}"#).into_bytes()
            });
            let key = format!(r#"{{"id":{id}}}"#).into_bytes();
            events[usize::from(step >= 2)].push(((id % 2) as i32, Some(key), value));
        }
    }
    (events, model)
}

async fn accounts(client: &Client) -> Accounts {
    let rows = client
        .query("SELECT id, version, balance, status FROM app.accounts", &[])
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect()
}

/// `sluice migrate --config <yaml>`: (exit code, output).
fn migrate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["migrate", "--config"])
        .arg(&path)
        .output()
        .expect("run sluice migrate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_needs_exactly_the_documented_grants() {
    let (url, admin) = fresh_db("privileges").await;
    let db = url.rsplit('/').next().unwrap().to_owned();
    // Roles are cluster-wide: named after this test's database.
    let (owner, run) = (format!("{db}_owner"), format!("{db}_run"));
    let as_role = |role: &str| url.replacen("postgres@", &format!("{role}@"), 1);
    let fill = |sql: &str| {
        sql.replace("{db}", &db)
            .replace("{owner}", &owner)
            .replace("{run}", &run)
    };
    admin
        .batch_execute(&format!(
            "CREATE ROLE {owner} LOGIN; CREATE ROLE {run} LOGIN; {TARGETS}; {}",
            fill(ADMIN_GRANTS)
        ))
        .await
        .unwrap();
    let kafka = kafka("orders", 2);
    for topic in ["accounts", "events", "halting"] {
        kafka
            .create_topic(topic, if topic == "halting" { 1 } else { 2 })
            .unwrap();
    }
    let brokers = kafka.bootstrap_servers();

    // Before the owner migrated, the runtime role could not create the
    // schema that auto_migrate would create: check says so.
    let yaml = config(brokers, &as_role(&run));
    let (code, text) = check(&yaml).await;
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "error: postgres.state_schema: schema sluice does not exist, and role {run} lacks \
             CREATE on database {db}"
        )),
        "{text}"
    );
    assert!(text.contains("1 problem(s) found"), "{text}");

    let (code, text) = migrate(&config(brokers, &as_role(&owner)));
    assert_eq!(code, 0, "the owner migrates:\n{text}");
    assert!(text.contains("migrations applied: [1, 2, 3, 4]"), "{text}");
    connect(&as_role(&owner))
        .await
        .batch_execute(&fill(OWNER_GRANTS))
        .await
        .expect("the owner grants on what it created");
    let (code, text) = check(&yaml).await;
    assert_eq!(code, 0, "the documented grants pass check:\n{text}");

    // An ordered append with a record that cannot be decoded among them.
    let mut records = orders(3_000, 2, 60);
    records.insert(
        1_500,
        (0, Some(b"poison".to_vec()), Some(b"not json".to_vec())),
    );
    let delivered = produce(brokers, "orders", records).await.unwrap();
    let poison = delivered[1_500];
    let orders_end = next_offsets(delivered);
    let ([accounts_first, accounts_then], model) = account_events();
    let accounts_end = produce_all(&kafka, "accounts", accounts_first).await;
    let event_records = (0..100)
        .map(|i| {
            (
                i % 2,
                None,
                Some(format!(r#"{{"body":"e{i}"}}"#).into_bytes()),
            )
        })
        .collect();
    let events_end = produce_all(&kafka, "events", event_records).await;
    produce_all(&kafka, "halting", vec![(0, None, Some(b"{".to_vec()))]).await;

    // auto_migrate is on: the current schema is left alone, without the
    // CREATE privileges this role lacks.
    let sink = Sink::start(&yaml);
    wait_drained(&admin, "orders", &orders_end, Duration::from_secs(120)).await;
    wait_drained(&admin, "accounts", &accounts_end, Duration::from_secs(60)).await;
    let accounts_end = produce_all(&kafka, "accounts", accounts_then).await;
    wait_drained(&admin, "accounts", &accounts_end, Duration::from_secs(60)).await;
    wait_drained(&admin, "events", &events_end, Duration::from_secs(60)).await;
    eventually(
        Duration::from_secs(60),
        "the halt to be recorded",
        || async {
            let n = count(
                &admin,
                "SELECT count(*) FROM sluice.halts WHERE \"offset\" = 0",
            )
            .await;
            (n == 1).then_some(())
        },
    )
    .await;
    assert_eq!(sink.metric("sluice_rows_deleted_total"), 14.0);
    assert!(sink.metric("sluice_rows_skipped_total") >= 40.0 - 14.0);
    assert_eq!(sink.metric("sluice_dead_letters_total"), 1.0);
    sink.stop().await.expect("clean stop");

    admin.batch_execute("SET search_path TO app").await.unwrap();
    assert_orders_exact(&admin, 3_000).await;
    assert_eq!(accounts(&admin).await, model, "upserts follow the model");
    let events: (i64, i64) = admin
        .query_one("SELECT count(*), count(DISTINCT id) FROM app.events", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        events,
        (100, 100),
        "every event once, ids from the sequence"
    );
    let dead = admin
        .query(
            "SELECT topic, partition, \"offset\", value, target_table FROM sluice.dead_letters",
            &[],
        )
        .await
        .unwrap();
    let dead: Vec<(String, i32, i64, Vec<u8>, String)> = dead
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(
        dead,
        [(
            "orders".into(),
            poison.0,
            poison.1,
            b"not json".to_vec(),
            "app.orders".into()
        )]
    );
    for (topic, end) in [("orders", &orders_end), ("accounts", &accounts_end)] {
        assert_eq!(&stored_offsets(&admin, topic).await, end, "{topic}");
    }
    // The halt is check's to report; out of the way for what follows.
    admin
        .batch_execute("DELETE FROM sluice.halts")
        .await
        .unwrap();

    revoke_one_at_a_time(&admin, &yaml, &fill).await;
}

#[test]
fn the_account_model_deletes_reinserts_and_skips() {
    let ([first, then], model) = account_events();
    assert_eq!((first.len(), then.len()), (80, 40 + 14 + 7));
    assert_eq!(model.len(), 40 - 14 + 7);
    assert_eq!(model[&0], (3, 3, "s3".into()));
    assert_eq!(model[&1], (2, 102, "s2".into()));
    assert!(!model.contains_key(&3));
}
