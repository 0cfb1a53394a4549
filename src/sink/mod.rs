//! The Postgres side: target-table catalog, record decoding and coercion,
//! binary cells, the batch writer, and how errors are classified and retried.

pub mod attempt;
pub mod breaker;
pub mod catalog;
pub mod cell;
pub mod coerce;
pub mod collapse;
pub mod commit;
pub mod dead_letters;
pub mod decode;
pub mod error;
pub mod extract;
pub mod numeric;
pub mod params;
pub mod privileges;
pub mod rows;
pub mod topic;
pub mod writer;

#[cfg(test)]
mod fuzz_tests;

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::GenericClient;

use crate::config::{Config, Problem, TableName};
use decode::RowDecoder;
use topic::TopicWriter;
use writer::{Route, TableWriter};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Postgres(#[from] error::SinkError),
    #[error("the target tables do not match the configuration")]
    Problems(Vec<Problem>),
}

impl From<tokio_postgres::Error> for PlanError {
    fn from(e: tokio_postgres::Error) -> Self {
        PlanError::Postgres(e.into())
    }
}

/// Reads every route's table from the catalog and builds its writer (one
/// per topic, holding the topic's routes in config order), reporting every
/// missing table, unknown column, unwritable type and missing privilege (of
/// the routes' tables and the state schema) at once.
pub async fn plan_writers(
    config: &Config,
    client: &impl GenericClient,
) -> Result<HashMap<String, Arc<TopicWriter>>, PlanError> {
    let mut problems = Vec::new();
    let mut routes: HashMap<String, Vec<TableWriter>> = HashMap::new();
    for (i, route) in config.routes.iter().enumerate() {
        let table = match TableName::parse(&route.table) {
            Ok(t) => t,
            Err(message) => {
                problems.push(Problem {
                    path: format!("routes[{i}].table"),
                    message,
                });
                continue;
            }
        };
        let Some(found) = catalog::read_table(client, &table).await? else {
            problems.push(catalog::missing_table(client, i, &table).await?);
            continue;
        };
        let mut lacking = privileges::check_route(client, i, route, &table, &found).await?;
        problems.append(&mut lacking);
        match catalog::plan_route(i, route, &table, &found) {
            Ok(planned) => {
                let writer = TableWriter::new(
                    table,
                    RowDecoder::new(route.format, planned),
                    Route {
                        name: route.route_name(),
                        method: route.write_method,
                        mode: route.mode,
                        key: route.key.as_deref(),
                        version: route.version.as_deref(),
                        delete_on_tombstone: route.delete_on_tombstone,
                        on_error: route.on_error,
                    },
                    &config.postgres,
                    config.batch.max_rows,
                );
                routes.entry(route.topic.clone()).or_default().push(writer);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    problems.append(&mut privileges::check_state(client, config).await?);
    if problems.is_empty() {
        Ok(routes
            .into_iter()
            .map(|(topic, routes)| {
                let writer = TopicWriter::new(routes, &config.postgres);
                (topic, Arc::new(writer))
            })
            .collect())
    } else {
        Err(PlanError::Problems(problems))
    }
}
