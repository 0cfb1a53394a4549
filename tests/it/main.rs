//! Integration tests: a real Postgres (started by the harness), librdkafka's
//! mock cluster, and the tansu broker where a real broker process is needed.
//! One binary, so one Postgres server for all of them.

mod harness;
mod patroni;
mod pgbouncer;
mod proxy;
mod replica;
mod tansu;
mod tls;

mod accounting;
mod broker_outage;
mod broker_outage_mock;
mod check;
mod crash;
mod cutover;
mod dead_letter_replay;
mod doctor;
mod edges;
mod exactly_once;
mod failover;
mod fence;
mod fuzzed_records;
mod idle_loss;
mod kafka_tls;
mod log_edges;
mod methods;
mod observability;
mod outages;
mod pg_errors;
mod pg_metrics;
mod pg_tls;
mod poison;
mod privileges;
mod quoting;
mod rebalance;
mod routes;
mod scaling;
mod status;
mod throttle;
mod upsert;
mod write_errors;
