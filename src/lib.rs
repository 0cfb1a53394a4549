//! # sluice — an ordered, exactly-once Kafka → PostgreSQL sink
//!
//! ## Data flow
//! ```text
//! Kafka ──(consumer group, cooperative-sticky)──► kafka::SinkContext::rebalance
//!    assign: claim each partition in Postgres (offsets), store its start if
//!            it has none (pipeline::start), check the stored offset against
//!            the log (pipeline::edges), split its queue off, start one
//!            pipeline::worker per partition
//!    revoke: stop those workers and wait for them (bounded)
//! partition queue ──► worker: collect a batch (rows | bytes | linger)
//!                 ──► throttle: wait for the budget (partition paused)
//!                 ──► sink::commit: one transaction = fence(offsets) + rows
//!                     (COPY or INSERT, sink::writer) + dead letters; retry,
//!                     bisect or stop by SQLSTATE class (sink::error); halt
//!                     on a poison storm (sink::breaker)
//!                 ──► advisory offset stored to Kafka (for lag tools)
//! ```
//!
//! ## Layout
//! - [`config`]: the YAML contract, `${VAR}` expansion, validation, and
//!   the effective configuration printed back (`config::effective_yaml`).
//! - [`app`]: `sluice run` — wiring, main poll loop, shutdown.
//! - [`kafka`]: librdkafka settings (`kafka.security` → TLS/SASL keys), the
//!   first contact that names a certificate or credential problem
//!   (`kafka::probe`), the rebalance callback, what the brokers say about a
//!   log (its bounds, a topic's partitions), whether any broker is reachable
//!   (`kafka::reachability`), client errors logged once per kind
//!   (`kafka::repeats`), and a partition's records taken from librdkafka
//!   many at a time (`kafka::burst`).
//! - [`pipeline`]: partition workers and the state they share; where a
//!   partition starts, what a stored offset outside the log does, and how
//!   a worker rewinds when Postgres lost its last commits (an idle one
//!   re-reads its offset row: `pipeline::reposition`).
//! - [`record`]: a Kafka record copied out of librdkafka, its key and value
//!   into the worker's shared buffers (`record::Arena`).
//! - [`sink`]: catalog, decoding (one pass over each JSON value for the
//!   route's pointers, compiled once: `sink::extract`) and coercion straight
//!   into binary COPY rows sent in large frames (`sink::rows`), the same
//!   rows bound as a multi-row INSERT's parameters (`sink::params`), binary
//!   cells for upserts and deletes, the writer of a topic's routes in one transaction
//!   (`sink::topic`) and of each route's table (`sink::writer`),
//!   commit with retry/bisection, SQLSTATE classification, and the
//!   privileges each route needs (`sink::privileges`).
//! - [`offsets`]: the offset store and its fence.
//! - [`migrate`]: sluice's own schema (`migrations/*.sql`).
//! - [`pg`]: the Postgres connection pool, and libpq-compatible TLS
//!   (`sslmode`, `sslrootcert`, client certificates) read from the URL,
//!   `postgres.ssl` or the `PGSSL*` environment.
//! - [`metrics`]: Prometheus metrics on a registry passed in; where a
//!   batch's time goes in Postgres (the pool, each transaction phase) in
//!   `metrics::pg`, the pool's checkouts timed by `pg::MeteredPool`.
//! - [`throttle`]: the replica's rows/bytes-per-second budget and its
//!   adaptive brake (AIMD on commit latency and replication lag).
//! - [`backoff`]: retry delays.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz`. [`health`]: the Postgres
//!   and Kafka reachability and the lag watcher behind them.
//! - [`check`]: `sluice check`. [`demo`]: `sluice demo`.
//! - [`ops`]: operator commands on the state in Postgres: `sluice
//!   dead-letters list` and `replay` (a dead letter written through its
//!   route, and removed, in one transaction), `sluice doctor` (what in
//!   the database's settings, target tables and sessions slows sluice down,
//!   `ops::doctor`), and `sluice status`, the cutover gate (`ops::status`:
//!   the state rows, the brokers' logs and the next unwritten record's
//!   timestamp, the replicas' `/readyz`, the report and its exit code),
//!   and `sluice offsets show`/`set` (`ops::offsets`: the one way to move
//!   stored offsets, to a place in the log, a time, or the same place in
//!   another cluster's copy of it for a blue/green cutover).
//! - [`embedded`]: a throwaway Postgres, librdkafka's mock cluster and a
//!   transaction-pooling PgBouncer, for the demo, the tests and benches/.
//! - [`logging`]: tracing set-up. [`malloc`]: glibc's heap trim and
//!   `mmap` thresholds, set at start-up so that librdkafka's per-record
//!   allocations do not fault in fresh pages.

pub mod app;
pub mod backoff;
pub mod check;
pub mod config;
pub mod demo;
pub mod embedded;
pub mod health;
pub mod http;
pub mod kafka;
pub mod logging;
pub mod malloc;
pub mod metrics;
pub mod migrate;
pub mod offsets;
pub mod ops;
pub mod pg;
pub mod pipeline;
pub mod record;
pub mod sink;
pub mod throttle;
