//! The `sluice` binary: parse the command line, load the config, set up
//! logging and metrics, run with a shutdown signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use sluice::config::{Config, LogConfig, LogFormat};

/// Exit code for a configuration that cannot be used (BSD's EX_USAGE).
mod commands;

const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(version, about = "Ordered, exactly-once Kafka → PostgreSQL sink")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config`, shared by the commands that read a configuration file.
#[derive(clap::Args)]
struct ConfigArg {
    /// The YAML configuration file (docs/configuration.md; config/example.yaml
    /// shows every setting).
    #[arg(long, short, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sink.
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the config, then check Kafka topics and target tables.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Only validate the config file: connect to neither Kafka nor
        /// Postgres (for CI pipelines and image smoke tests).
        #[arg(long)]
        offline: bool,
    },
    /// Create or upgrade sluice's own schema, then exit.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Run the whole pipeline against an embedded Kafka and Postgres.
    Demo(sluice::demo::DemoArgs),
    /// Look at the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List or replay the records that were dead-lettered.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
    /// Inspect the Postgres the config points at: settings, target tables,
    /// indexes, sessions and replication, each finding with the value seen
    /// and what to change. Only reads. Exits 0 when nothing warns, 1 when
    /// something does, 2 when it cannot run.
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        /// How many replicas of sluice share the database: the connection
        /// budget is this × postgres.pool_size.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..))]
        replicas: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The cutover gate: per partition the log, the stored offset, the lag
    /// in records and seconds, the owner, halts; dead letters per route;
    /// the consumer group. Exits 0 when every partition is caught up and
    /// nothing is halted, 1 when lagging, 2 when halted or on an error.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: sluice::ops::status::StatusArgs,
    },
    /// The offsets stored in Postgres, and the one way to move them.
    Offsets {
        #[command(subcommand)]
        command: OffsetsCommand,
    },
}

#[derive(Subcommand)]
enum OffsetsCommand {
    /// Every stored offset of the group: the next offset per partition,
    /// the Kafka cluster it belongs to, its owner, its last commit and
    /// last record's time, halts.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move stored offsets, in one transaction: to the log's start or end,
    /// an offset, a time, or the same place in another cluster's copy of
    /// the log (translate). Exits 0 when moved (or a dry run could), 2
    /// when refused or on an error; nothing is changed then.
    Set {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: sluice::ops::offsets::SetArgs,
    },
}

/// Which dead letters (of the configured group); every filter given holds.
#[derive(clap::Args)]
struct Selection {
    /// Only this route's (`routes[].name`, by default the table's full
    /// name, e.g. public.orders).
    #[arg(long, value_name = "NAME")]
    route: Option<String>,
    /// Only those dead-lettered since: an RFC 3339 time
    /// (2026-12-03T08:00:00Z) or a duration back from now (90m, 1h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// What failed, why (grouped by route and reason), how many.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        selection: Selection,
    },
    /// Write dead letters through their route again (after the cause was
    /// fixed), each removed in the same transaction; one that fails again
    /// stays, with the new reason. Exits 1 when any is kept.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        selection: Selection,
        /// Only these dead letters (their id; repeat or separate by
        /// commas).
        #[arg(long = "id", value_name = "ID", value_delimiter = ',')]
        ids: Vec<i64>,
        /// Only those whose reason holds this text (an SQL ILIKE pattern
        /// when it has a %).
        #[arg(long, value_name = "TEXT")]
        reason_like: Option<String>,
        /// Do everything, then roll each transaction back: shows what
        /// would be written and what would fail again.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration as YAML: every default filled in,
    /// `${VAR}`s expanded, secrets shown as ***. It reads back as the same
    /// configuration.
    Print {
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn main() -> ExitCode {
    // Before any thread starts (src/malloc.rs says why).
    sluice::malloc::tune();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(config.config).await,
            Command::Check { config, offline } => {
                sluice::check::check(&config.config, offline).await
            }
            Command::Migrate { config } => migrate(config.config).await,
            Command::Config {
                command: ConfigCommand::Print { config },
            } => print_config(&config.config),
            Command::DeadLetters { command } => dead_letters(command).await,
            Command::Doctor {
                config,
                replicas,
                json,
            } => commands::doctor(&config.config, replicas, json).await,
            Command::Status { config, args } => commands::status(&config.config, args).await,
            Command::Offsets {
                command: OffsetsCommand::Show { config, json },
            } => commands::offsets_show(&config.config, json).await,
            Command::Offsets {
                command: OffsetsCommand::Set { config, args },
            } => commands::offsets_set(&config.config, args).await,
            Command::Demo(args) => {
                sluice::logging::init(&LogConfig {
                    format: LogFormat::Text,
                    level: "warn".into(),
                });
                match sluice::demo::run(args).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("demo failed: {e:#}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    });
    // A consumer close still blocked on an unreachable broker (see
    // app::run) must not keep the process alive after its exit code is set.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("error: invalid configuration {}:\n{e}", path.display());
        ExitCode::from(EXIT_CONFIG)
    })
}

async fn run(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    sluice::logging::init(&config.log);
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    tokio::spawn(on_signal(shutdown.clone()));
    match sluice::app::run(config, &registry, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sluice stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_config(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match sluice::config::effective_yaml(&config) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dead_letters(command: DeadLettersCommand) -> ExitCode {
    let (path, selection, ids, reason_like, replay) = match command {
        DeadLettersCommand::List { config, selection } => (config, selection, vec![], None, None),
        DeadLettersCommand::Replay {
            config,
            selection,
            ids,
            reason_like,
            dry_run,
        } => (config, selection, ids, reason_like, Some(dry_run)),
    };
    let config = match load(&path.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    sluice::logging::init(&config.log);
    let since = match selection
        .since
        .as_deref()
        .map(sluice::ops::dead_letters::parse_since)
    {
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        since => since.and_then(Result::ok),
    };
    let chosen = sluice::ops::dead_letters::Selection {
        route: selection.route,
        since,
        ids,
        reason_like,
    };
    let done = match replay {
        None => sluice::ops::list_command(&config, &chosen, selection.json)
            .await
            .map(|text| (text, true)),
        Some(dry_run) => {
            sluice::ops::replay_command(&config, &chosen, dry_run, selection.json).await
        }
    };
    match done {
        Ok((text, all)) => {
            print!("{text}");
            if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn migrate(path: PathBuf) -> ExitCode {
    let config = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    sluice::logging::init(&config.log);
    match sluice::check::migrate_only(&config).await {
        Ok(applied) => {
            println!("migrations applied: {applied:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `token` on SIGTERM or SIGINT.
async fn on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested; draining");
    token.cancel();
}
