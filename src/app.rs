//! `sluice run`: wires Postgres, the consumer group and the partition
//! workers together and runs until shutdown or a fatal error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::config::{redact_url, Config, Problem};
use crate::health;
use crate::kafka::probe::{first_contact, ProbeError};
use crate::kafka::{client_config, reachability, SinkConsumer, SinkContext};
use crate::metrics::Metrics;
use crate::migrate::migrate;
use crate::pg::{self, PgSetupError};
use crate::pipeline::{Shared, Workers};
use crate::sink::error::{ErrorClass, SinkError};
use crate::sink::topic::TopicWriter;
use crate::sink::{plan_writers, PlanError};

/// The part of `shutdown_grace` kept for closing the consumer (leaving the
/// group) after the workers: a fifth, at most this.
const CLOSE_RESERVE: Duration = Duration::from_secs(3);

/// How long start-up waits for a first answer from the brokers.
const KAFKA_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Closing the consumer gets at least this long, even past the grace.
const MIN_CLOSE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Led by the config field to change (`postgres.url: cannot connect
    /// to ...`, `postgres.statement_timeout: the server refuses ...`).
    #[error("{}", .0.attributed())]
    PgSetup(#[from] PgSetupError),
    #[error(transparent)]
    Postgres(#[from] SinkError),
    #[error("the database does not fit the configuration (tables, columns, privileges):\n{}", list(.0))]
    Plan(Vec<Problem>),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    KafkaSetup(#[from] ProbeError),
    #[error("{0}")]
    Failed(String),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {}: {}", p.path, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

impl From<PlanError> for AppError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Postgres(e) => AppError::Postgres(e),
            PlanError::Problems(p) => AppError::Plan(p),
        }
    }
}

/// Runs the sink until `shutdown` is cancelled (then drains and returns
/// `Ok`) or a fatal error stops it. Needs a multi-thread tokio runtime.
pub async fn run(
    config: Config,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    let metrics = Metrics::register(registry)?;
    let pool = pg::pool(&config.postgres)?;
    let stop = shutdown.child_token();
    info!(postgres = %redact_url(config.postgres.url.expose()), brokers = %config.kafka.brokers,
          group = %config.kafka.group_id, "starting");
    let listener = crate::http::bind(config.http.listen).await.map_err(|e| {
        AppError::Failed(format!(
            "cannot listen on http.listen {}: {e}",
            config.http.listen
        ))
    })?;
    let Some(writers) = prepare(&config, &pool, &metrics, &stop).await? else {
        return Ok(());
    };
    contact_kafka(&config).await?;
    let shared = Arc::new(Shared::new(&config, pool, writers, metrics, stop));
    let workers = Arc::new(Workers::default());
    let context = SinkContext::new(Arc::clone(&shared), Arc::clone(&workers), Handle::current());
    let consumer: Arc<SinkConsumer> =
        Arc::new(client_config(&config).create_with_context(context)?);
    consumer.context().set_consumer(&consumer);
    // A topic read by several routes is subscribed once.
    let topics: Vec<&str> = config
        .routes
        .iter()
        .map(|r| r.topic.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    consumer.subscribe(&topics)?;
    info!(?topics, "subscribed");
    // The watchers end with their own token, after the workers: /readyz
    // and lag stay served while the workers drain.
    let watchers = CancellationToken::new();
    let tasks = [
        tokio::spawn(crate::http::serve(
            listener,
            registry.clone(),
            Arc::clone(&shared),
            watchers.clone(),
        )),
        tokio::spawn(health::probe_postgres(
            Arc::clone(&shared),
            watchers.clone(),
        )),
        tokio::spawn(health::track_lag(Arc::clone(&shared), watchers.clone())),
    ];
    let brake = shared.throttle.as_ref().map(|throttle| {
        tokio::spawn(crate::throttle::adaptive::run(
            Arc::clone(throttle),
            shared.pool.unmetered().clone(),
            shared.stop.clone(),
        ))
    });

    let polled = serve(&consumer, &shared).await;

    let stopping = Instant::now();
    let grace = config.shutdown_grace;
    let for_workers = grace - (grace / 5).min(CLOSE_RESERVE);
    let handles = workers.stop_all();
    if !Workers::wait(handles, for_workers).await {
        warn!(?grace, "workers still writing at the end of shutdown_grace; their batches are left for the next owner");
    }
    watchers.cancel();
    for task in tasks.into_iter().chain(brake) {
        let _ = task.await;
    }
    // Closing leaves the group (partitions move at once) and commits the
    // advisory offsets; it polls synchronously, so not on a runtime thread.
    // With no broker reachable librdkafka's close never ends: it gets what
    // is left of shutdown_grace (at least a second), then the replica exits
    // without leaving (the group reassigns after session.timeout.ms; the
    // offsets are safe in Postgres), rather than wait for the kubelet's
    // SIGKILL.
    // A plain thread, not the runtime's blocking pool: a close that never
    // ends must not hold up the runtime's shutdown (an embedding program's,
    // or a test's) once its time is up.
    let left = grace.saturating_sub(stopping.elapsed()).max(MIN_CLOSE);
    let (done, closed) = tokio::sync::oneshot::channel();
    let closer = std::thread::Builder::new()
        .name("sluice-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = done.send(());
        });
    let closed = match closer {
        Ok(_) => tokio::time::timeout(left, closed).await.is_ok(),
        Err(_) => false,
    };
    if !closed {
        let reason = format!(
            "could not leave the consumer group within shutdown_grace ({}): is Kafka reachable? \
             Exiting anyway; the group reassigns this replica's partitions after session.timeout.ms",
            humantime::format_duration(grace)
        );
        shared.fail(reason);
    }
    polled?;
    match shared.failure() {
        Some(reason) => Err(AppError::Failed(reason)),
        None => {
            info!("stopped cleanly");
            Ok(())
        }
    }
}

/// Polls the main queue, which serves rebalances and client events; records
/// never arrive here because every assigned partition's queue is split off.
async fn serve(consumer: &SinkConsumer, shared: &Shared) -> Result<(), AppError> {
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return Ok(()),
            msg = consumer.recv() => match msg {
                Ok(m) => {
                    let reason = format!(
                        "a record of {}[{}] reached the main queue; refusing to write it out of order",
                        m.topic(), m.partition());
                    shared.fail(reason.clone());
                    return Err(AppError::Failed(reason));
                }
                Err(e) => {
                    shared.metrics.kafka_errors.inc();
                    let code = e.rdkafka_error_code();
                    if code == Some(RDKafkaErrorCode::AllBrokersDown) {
                        reachability::all_down(shared);
                    }
                    if let Some(held_back) = shared.kafka_repeats.admit(&format!("client:{code:?}")) {
                        warn!(error = %e, held_back, "kafka client error");
                    }
                }
            }
        }
    }
}

/// A wrong certificate, key or password stops start-up here, named, rather
/// than leaving a replica that retries forever and never joins the group.
/// An unreachable cluster only warns: librdkafka keeps trying, and the
/// replica stays not ready until it joins.
async fn contact_kafka(config: &Config) -> Result<(), AppError> {
    let probe_config = config.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        let topic = probe_config.routes.first().map(|r| r.topic.clone());
        first_contact(
            &probe_config,
            topic.as_deref().unwrap_or(""),
            KAFKA_PROBE_TIMEOUT,
        )
        .map(drop)
    })
    .await
    .map_err(|e| AppError::Failed(format!("the Kafka probe failed: {e}")))?;
    match verdict {
        Ok(()) => Ok(()),
        Err(e) if e.is_setting() => Err(e.into()),
        Err(e) => {
            warn!(error = %e, "Kafka is not reachable yet; starting anyway (librdkafka keeps trying)");
            Ok(())
        }
    }
}

/// Migrates sluice's schema and plans every route's writer, waiting for
/// Postgres if it is not reachable yet. `None` when shut down meanwhile.
async fn prepare(
    config: &Config,
    pool: &deadpool_postgres::Pool,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<Option<HashMap<String, Arc<TopicWriter>>>, AppError> {
    let mut backoff = Backoff::new(config.retry.initial_backoff, config.retry.max_backoff);
    loop {
        // Ok(Err): the server refused a setting or the migration, which no
        // retry changes.
        let attempt: Result<Result<_, PgSetupError>, PlanError> = async {
            let mut client = pool.get().await.map_err(SinkError::from)?;
            if config.postgres.auto_migrate {
                let schema = &config.postgres.state_schema;
                let applied = match migrate(&mut client, schema).await {
                    Ok(applied) => applied,
                    Err(e) => match pg::migration_refused(&e, schema) {
                        Some(refused) => return Ok(Err(refused)),
                        None => return Err(e.into()),
                    },
                };
                if !applied.is_empty() {
                    info!(?applied, "applied migrations");
                }
            }
            // In a transaction: its catalog reads prepare statements, which
            // must not outlive it on a server connection a pooler shares.
            // The settings first, as every batch sends them: a value the
            // server refuses stops start-up under its field, rather than
            // failing the first batch (SQLSTATE 22023, a "data" class).
            let txn = client.transaction().await.map_err(SinkError::from)?;
            let refused = pg::refused_setting(&txn, &config.postgres)
                .await
                .map_err(SinkError::from)?;
            if let Some(refused) = refused {
                return Ok(Err(refused));
            }
            let planned = plan_writers(config, &*txn).await;
            txn.rollback().await.map_err(SinkError::from)?;
            planned.map(Ok)
        }
        .await;
        match attempt {
            Ok(Ok(writers)) => return Ok(Some(writers)),
            Ok(Err(refused)) => return Err(refused.into()),
            // A certificate, TLS or password problem does not go away.
            Err(PlanError::Postgres(e)) if pg::connect_failure(&e, &config.postgres).is_some() => {
                return Err(pg::connect_failure(&e, &config.postgres).map_or(e.into(), Into::into));
            }
            Err(PlanError::Postgres(e)) if e.class() == ErrorClass::Retry => {
                metrics
                    .pg_errors
                    .with_label_values(&[&e.class_label()])
                    .inc();
                warn!(error = %pg::describe(&e, &config.postgres), "Postgres is not reachable yet; retrying");
                if !backoff.wait(stop).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
