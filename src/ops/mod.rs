//! Operator commands that act on a deployment's state in Postgres, apart
//! from running the sink: `sluice dead-letters list` and `replay`, and
//! `sluice doctor` (what in the database slows sluice down) and `sluice
//! status` (the cutover gate).

pub mod dead_letters;
pub mod doctor;
pub mod offsets;
pub mod replay;
pub mod status;

/// What an operator command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Setup(#[from] crate::pg::PgSetupError),
    #[error(transparent)]
    Postgres(#[from] crate::sink::error::SinkError),
    #[error("{0}")]
    Plan(String),
    #[error("{0}")]
    Usage(String),
    /// The first contact with the brokers failed; names the config field.
    #[error(transparent)]
    Kafka(#[from] crate::kafka::probe::ProbeError),
    /// A question to the brokers after the first contact failed.
    #[error("kafka.brokers: {0}")]
    Broker(String),
}

impl From<tokio_postgres::Error> for OpsError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpsError::Postgres(e.into())
    }
}

/// `sluice dead-letters list`: the listing, as text or JSON.
pub async fn list_command(
    config: &crate::config::Config,
    selection: &dead_letters::Selection,
    json: bool,
) -> Result<String, OpsError> {
    let client = crate::pg::connect(&config.postgres).await?;
    let listing = dead_letters::list(&client, config, selection).await?;
    Ok(match json {
        true => to_json(&listing)?,
        false => listing.text(),
    })
}

/// `sluice dead-letters replay`: the report as text or JSON, and whether
/// every selected dead letter was written.
pub async fn replay_command(
    config: &crate::config::Config,
    selection: &dead_letters::Selection,
    dry_run: bool,
    json: bool,
) -> Result<(String, bool), OpsError> {
    let mut client = crate::pg::connect(&config.postgres).await?;
    let report = replay::replay(&mut client, config, selection, dry_run).await?;
    let text = match json {
        true => to_json(&report)?,
        false => report.text(),
    };
    Ok((text, report.failed() == 0))
}

/// `sluice doctor`: the findings as text or JSON, and whether none is a
/// warning.
pub async fn doctor_command(
    config: &crate::config::Config,
    replicas: u32,
    json: bool,
) -> Result<(String, bool), OpsError> {
    let client = crate::pg::connect(&config.postgres).await?;
    let report = doctor::diagnose(&client, config, replicas).await?;
    let text = match json {
        true => to_json(&report)?,
        false => report.text(),
    };
    Ok((text, report.healthy()))
}

/// `sluice status`: the report as text or JSON, and the exit code its
/// verdict gives (0 caught up, 1 lagging, 2 halted); an error is exit 2
/// for the caller to print.
pub async fn status_command(
    config: &crate::config::Config,
    options: &status::Options,
) -> Result<(String, u8), OpsError> {
    let report = status::run(config, options).await?;
    let text = match options.json {
        true => to_json(&report)?,
        false => report.text(),
    };
    Ok((text, report.exit_code))
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> Result<String, OpsError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| OpsError::Usage(format!("cannot write JSON: {e}")))
}
