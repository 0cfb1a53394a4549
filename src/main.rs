//! The `sluice` binary: parse the command line, load the config, set up
//! logging and metrics, run with a shutdown signal.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use sluice::config::{Config, LogConfig, LogFormat};

/// Exit code for a configuration that cannot be used (BSD's EX_USAGE).
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
