//! Integration tests: a real Postgres (started by the harness) and
//! librdkafka's mock cluster. One binary, so one server for all of them.

mod harness;
mod proxy;

mod check;
mod crash;
mod exactly_once;
mod fence;
mod methods;
mod observability;
mod outages;
mod poison;
mod throttle;
mod upsert;
mod write_errors;
