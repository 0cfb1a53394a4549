//! The operator commands that report on or move a deployment's state
//! (`doctor`, `status`, `offsets`): loading the config, running the
//! command in `sluice::ops`, printing, and the exit code. A config or flag
//! that cannot be used exits 2, like an unreachable Postgres, so a
//! runbook's gate never reads it as "lagging" or "warnings".

use std::path::Path;
use std::process::ExitCode;

use sluice::config::Config;

/// A config that cannot be loaded, printed like every command prints it.
fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: invalid configuration {}:\n{e}", path.display());
        ExitCode::from(2)
    })
}

/// Prints a command's output and exits with `code`, or prints its error
/// and exits 2.
fn finish<E: std::fmt::Display>(result: Result<(String, u8), E>) -> ExitCode {
    match result {
        Ok((text, code)) => {
            print!("{text}");
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `sluice doctor`: 0 nothing warns, 1 something does, 2 cannot run.
pub async fn doctor(path: &Path, replicas: u32, json: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    sluice::logging::init(&config.log);
    let done = sluice::ops::doctor_command(&config, replicas, json).await;
    finish(done.map(|(text, healthy)| (text, u8::from(!healthy))))
}

/// `sluice status`: 0 caught up, 1 lagging, 2 halted or cannot run.
pub async fn status(path: &Path, args: sluice::ops::status::StatusArgs) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    sluice::logging::init(&config.log);
    match args.options() {
        Ok(options) => finish(sluice::ops::status_command(&config, &options).await),
        Err(e) => finish(Err::<(String, u8), _>(e)),
    }
}

/// `sluice offsets show`: 0, or 2 when it cannot read the offsets.
pub async fn offsets_show(path: &Path, json: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    sluice::logging::init(&config.log);
    finish(
        sluice::ops::offsets::show(&config, json)
            .await
            .map(|t| (t, 0)),
    )
}

/// `sluice offsets set`: 0 moved (or a dry run could), 2 refused or
/// failed, with nothing changed.
pub async fn offsets_set(path: &Path, args: sluice::ops::offsets::SetArgs) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    sluice::logging::init(&config.log);
    match args.options(&config) {
        Ok(options) => finish(
            sluice::ops::offsets::set(&config, &options)
                .await
                .map(|(_, text)| (text, 0)),
        ),
        Err(e) => finish(Err::<(String, u8), _>(e)),
    }
}
