//! `sluice check` and `sluice migrate`: validate the config, then every
//! external dependency it names — every problem reported at once.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kafka::probe::{first_contact, ProbeContext, ProbeError};

use crate::config::{quote_ident, redact_url, Config, ConfigError, Problem};
use crate::migrate::migrate;
use crate::pg;
use crate::sink::{plan_writers, PlanError};
use tokio_postgres::types::Type;

const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs every check and prints the verdict; exit 0 only when all is well.
/// `offline` stops after the config file's own validation.
pub async fn check(path: &Path, offline: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(ConfigError::Invalid(problems)) => return report(&problems, 64),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    if offline {
        println!(
            "ok: configuration valid ({} route(s)); Kafka and Postgres not contacted",
            config.routes.len()
        );
        return ExitCode::SUCCESS;
    }
    let (mut problems, stored) = check_postgres(&config).await;
    problems.extend(check_kafka(&config, stored).await);
    if problems.is_empty() {
        println!(
            "ok: configuration valid, Postgres and every target table writable, every topic found"
        );
        ExitCode::SUCCESS
    } else {
        report(&problems, 1)
    }
}

fn report(problems: &[Problem], code: u8) -> ExitCode {
    for p in problems {
        eprintln!("error: {}: {}", p.path, p.message);
    }
    eprintln!("{} problem(s) found", problems.len());
    ExitCode::from(code)
}

/// A partition's stored next offset: (topic, partition, offset).
type Stored = Vec<StoredOffset>;

/// A partition's stored offset and the Kafka cluster it belongs to.
#[derive(Debug, Clone)]
struct StoredOffset {
    topic: String,
    partition: i32,
    offset: i64,
    cluster_id: Option<String>,
}

/// What `check` says about Postgres for `config` (validated or not): the
/// connection, the settings sluice sends, the tables, privileges, halts.
pub async fn postgres_problems(config: &Config) -> Vec<Problem> {
    check_postgres(config).await.0
}

/// A set-up error under the field it is about (`postgres.url` for those
/// whose message names its own setting, as it always was).
fn setup_problem(e: &pg::PgSetupError) -> Problem {
    Problem {
        path: e.field().unwrap_or("postgres.url").into(),
        message: e.to_string(),
    }
}

/// Postgres' problems, and the stored offsets (checked against the logs).
async fn check_postgres(config: &Config) -> (Vec<Problem>, Stored) {
    let problem = |message: String| Problem {
        path: "postgres.url".into(),
        message,
    };
    let url = redact_url(config.postgres.url.expose());
    let mut client = match pg::connect(&config.postgres).await {
        Ok(client) => client,
        Err(e) => return (vec![setup_problem(&e)], Vec::new()),
    };
    if let Some(warning) = pg::unencrypted_warning(&config.postgres, &client).await {
        eprintln!("warning: {warning}");
    }
    // The settings every batch starts with, as `run` tries them at start-up.
    let mut problems = match client.transaction().await {
        Ok(txn) => {
            let refused = pg::refused_setting(&txn, &config.postgres).await;
            let _ = txn.rollback().await;
            match refused {
                Ok(None) => Vec::new(),
                Ok(Some(e)) => vec![setup_problem(&e)],
                Err(e) => vec![problem(format!(
                    "querying {url} failed: {}",
                    pg::error_text(&e)
                ))],
            }
        }
        Err(e) => vec![problem(format!(
            "querying {url} failed: {}",
            pg::error_text(&e)
        ))],
    };
    // In a transaction: its catalog reads prepare statements, which must
    // not outlive it on a server connection a pooler shares.
    let planned = match client.transaction().await {
        Ok(txn) => {
            let planned = plan_writers(config, &txn).await;
            let _ = txn.rollback().await;
            planned
        }
        Err(e) => Err(PlanError::Postgres(e.into())),
    };
    match planned {
        Ok(_) => {}
        Err(PlanError::Problems(p)) => problems.extend(p),
        Err(PlanError::Postgres(e)) => {
            problems.push(problem(format!("querying {url} failed: {e}")))
        }
    }
    problems.extend(halts(config, &client).await);
    if !config.postgres.auto_migrate {
        let schema = &config.postgres.state_schema;
        let found = client
            .query_typed_one(
                "SELECT to_regclass(quote_ident($1) || '.offsets') IS NOT NULL",
                &[(schema, Type::TEXT)],
            )
            .await
            .map(|r| r.get::<_, bool>(0));
        if !matches!(found, Ok(true)) {
            problems.push(Problem {
                path: "postgres.state_schema".into(),
                message: format!(
                    "{schema}.offsets does not exist and auto_migrate is off (run `sluice migrate`)"
                ),
            });
        }
    }
    (problems, stored_offsets(config, &client).await)
}

async fn stored_offsets(config: &Config, client: &tokio_postgres::Client) -> Stored {
    let sql = format!(
        // The cluster through to_jsonb: a state schema older than
        // migration 4 has no such column yet.
        "SELECT topic, partition, next_offset, to_jsonb(o) ->> 'cluster_id' FROM {}.offsets o \
         WHERE group_id = $1 AND next_offset IS NOT NULL",
        quote_ident(&config.postgres.state_schema)
    );
    // No offsets table yet means nothing stored.
    let group = (&config.kafka.group_id as _, Type::TEXT);
    let Ok(rows) = client.query_typed(&sql, &[group]).await else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| {
            Some(StoredOffset {
                topic: r.try_get(0).ok()?,
                partition: r.try_get(1).ok()?,
                offset: r.try_get(2).ok()?,
                cluster_id: r.try_get(3).ok()?,
            })
        })
        .collect()
}

/// Stored offsets of another Kafka cluster, or outside their partition's
/// log (what a worker halts on, or moves by `on_offset_out_of_range`),
/// said before sluice runs.
fn offsets_outside_the_log(
    config: &Config,
    consumer: &BaseConsumer<ProbeContext>,
    stored: &Stored,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let cluster = consumer.client().fetch_cluster_id(KAFKA_TIMEOUT);
    for stored in stored {
        let (topic, partition, offset) = (&stored.topic, &stored.partition, &stored.offset);
        let Some(index) = config.routes.iter().position(|r| &r.topic == topic) else {
            continue;
        };
        if let (Some(stored), Some(now)) = (&stored.cluster_id, &cluster) {
            if stored != now {
                problems.push(Problem {
                    path: format!("routes[{index}].topic"),
                    message: format!(
                        "partition {topic}[{partition}]: the stored offset {offset} belongs to \
                         Kafka cluster {stored}, but kafka.brokers are cluster {now}; the \
                         partition halts until `sluice offsets set --topic {topic} --to \
                         translate` (or another start point) moves it (docs/operations.md, \
                         \"Blue/green cutover\")"
                    ),
                });
                continue;
            }
        }
        let Ok(log) = crate::kafka::log::bounds(consumer, topic, *partition) else {
            continue;
        };
        let rule = config.offset_out_of_range(topic);
        let (edge, action) = crate::pipeline::edges::decide(*offset, log, rule);
        use crate::pipeline::edges::{Action, Edge};
        let what = match edge {
            Edge::Inside => continue,
            Edge::AheadOfEnd => format!("is ahead of the log end {}", log.high),
            Edge::BehindStart => format!("is below the log start {}", log.low),
        };
        let then = match action {
            Action::Halt => format!(
                "the partition halts until `sluice offsets set --topic {topic} --partition \
                 {partition} --to earliest` (or offset:<N>) moves the stored offset \
                 (docs/operations.md, \"Stored offset outside the log\")"
            ),
            Action::MoveTo(_) | Action::Retry => continue,
        };
        problems.push(Problem {
            path: format!("routes[{index}].topic"),
            message: format!(
                "partition {topic}[{partition}]: the stored offset {offset} {what} \
                 (log {}..{}); {then}",
                log.low, log.high
            ),
        });
    }
    problems
}

/// Halted partitions (`on_error: stop`, a stored offset outside the log),
/// as recorded in the state schema.
async fn halts(config: &Config, client: &tokio_postgres::Client) -> Vec<Problem> {
    let schema = &config.postgres.state_schema;
    let sql = format!(
        "SELECT topic, partition, \"offset\", error FROM {}.halts WHERE group_id = $1 \
         ORDER BY topic, partition",
        quote_ident(schema)
    );
    // No halts table yet means nothing ever halted.
    let group = (&config.kafka.group_id as _, Type::TEXT);
    let Ok(rows) = client.query_typed(&sql, &[group]).await else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| {
            let (topic, partition, offset, error): (String, i32, i64, String) = (
                r.try_get(0).ok()?,
                r.try_get(1).ok()?,
                r.try_get(2).ok()?,
                r.try_get(3).ok()?,
            );
            let index = config
                .routes
                .iter()
                .position(|route| route.topic == topic)?;
            Some(Problem {
                path: format!("routes[{index}]"),
                message: format!(
                    "partition {topic}[{partition}] is halted before offset {offset}: {error}. \
                     Fix the cause, then restart sluice (docs/operations.md, \"Halted partitions\")"
                ),
            })
        })
        .collect()
}

async fn check_kafka(config: &Config, stored: Stored) -> Vec<Problem> {
    let topics: Vec<(usize, String)> = config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r.topic.clone()))
        .collect();
    let config = config.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let first = topics.first().map_or("", |(_, t)| t.as_str());
        // A certificate, credential or unreachable broker is one problem,
        // named once, not once per topic.
        let consumer = match first_contact(&config, first, KAFKA_TIMEOUT) {
            Ok(c) => c,
            Err(e) => return vec![probe_problem(&e)],
        };
        let mut problems = Vec::new();
        for (i, topic) in topics {
            let found = consumer
                .fetch_metadata(Some(&topic), KAFKA_TIMEOUT)
                .map_err(|e| (true, e.to_string()))
                .and_then(|md| match md.topics().first() {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                    _ => Err((false, format!("topic {topic} does not exist"))),
                });
            match found {
                Ok(()) => {}
                Err((true, e)) => {
                    problems.push(Problem {
                        path: "kafka.brokers".into(),
                        message: format!(
                            "cannot fetch metadata from {}: {e}",
                            config.kafka.brokers
                        ),
                    });
                    break;
                }
                Err((false, message)) => problems.push(Problem {
                    path: format!("routes[{i}].topic"),
                    message,
                }),
            }
        }
        if problems.is_empty() {
            problems.extend(offsets_outside_the_log(&config, &consumer, &stored));
        }
        problems
    })
    .await;
    checked.unwrap_or_else(|e| {
        vec![Problem {
            path: "kafka".into(),
            message: format!("metadata check failed: {e}"),
        }]
    })
}

/// A probe failure as a problem: its path is the setting it names.
fn probe_problem(e: &ProbeError) -> Problem {
    let text = e.to_string();
    let (path, message) = text.split_once(": ").unwrap_or(("kafka", text.as_str()));
    Problem {
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{}", .0.attributed())]
    Setup(#[from] pg::PgSetupError),
    #[error("migration failed: {}", pg::error_text(.0))]
    Migrate(tokio_postgres::Error),
}

/// `sluice migrate`: applies pending migrations of the state schema.
pub async fn migrate_only(config: &Config) -> Result<Vec<i32>, MigrateError> {
    let mut client = pg::connect(&config.postgres).await?;
    migrate(&mut client, &config.postgres.state_schema)
        .await
        .map_err(MigrateError::Migrate)
}
