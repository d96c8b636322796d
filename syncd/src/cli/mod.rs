//! The command line: `syncd run`, `auth`, `status`, `changes`, `resync`, `reconcile`,
//! `webhooks`, `quarantine`, `publish`, `tasks`, `config check`, `demo`.
//!
//! The CLI wing: every clap type and all printing of syncd live here, one module per command
//! family. The commands call the daemon and the domain modules (`sync`, `outbox`, `status`,
//! `feed`, `store`), which return data; nothing outside `cli` refers back to it. `demo` (cargo
//! feature `demo`) is the only module that depends on the emulator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::Result;
use crate::config::Config;
use crate::logging::LogFormat;

pub mod auth;
pub mod changes;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod publish;
pub mod quarantine;
pub mod run;
pub mod status;
pub mod subscription;
pub mod tasks;
pub mod webhooks;

/// syncd: SuperOffice → SQLite sync with a change feed, and idempotent publishes back.
#[derive(Debug, Parser)]
#[command(name = "syncd", version, about)]
pub struct Cli {
    /// Config file (default: $CONFIGURATION_DIRECTORY/syncd.toml under systemd, else ./syncd.toml).
    #[arg(long, global = true, env = "SYNCD_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (systemd `Type=notify`).
    Run,
    /// Sign in (OAuth) or check the system user.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// One line per subscription: state, rows, last sync, lag, errors.
    Status {
        /// One JSON object: `{"subscriptions": [{subscription, state, rows, last_sync,
        /// lag_seconds, newest_change_age_seconds, errors}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Print the change feed as JSON lines.
    Changes {
        /// Print changes after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Keep printing new changes.
        #[arg(long)]
        follow: bool,
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
    },
    /// Start a subscription over from scratch (the next pass is a full load; unchanged records
    /// emit nothing).
    Resync {
        /// The subscription.
        subscription: String,
    },
    /// Reconcile deletes of a subscription on its next pass.
    Reconcile {
        /// The subscription.
        subscription: String,
    },
    /// Manage the tenant's webhooks.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Records whose transform failed or ran out of budget: list them, or fetch them again.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Queue a publish (create, update, patch, delete, upsert).
    Publish(publish::PublishArgs),
    /// The publish task ledger.
    #[command(subcommand)]
    Tasks(tasks::TasksCommand),
    /// Configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Start the built-in emulator with data and live activity, sync it, and show progress.
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
}

/// What every command gets.
#[derive(Debug)]
pub struct Context {
    /// The config file path (may not exist for `demo`).
    pub config_path: PathBuf,
    /// The log format chosen.
    pub log_format: LogFormat,
}

impl Context {
    /// Loads and validates the config file.
    pub fn config(&self) -> Result<Config> {
        Config::load(&self.config_path)
    }
}

fn default_config_path() -> PathBuf {
    crate::config::in_systemd_directory("CONFIGURATION_DIRECTORY", "syncd.toml")
}

/// Entry point of the `syncd` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let context = Context {
        config_path: cli.config.clone().unwrap_or_else(default_config_path),
        log_format: cli.log_format,
    };
    let quiet = matches!(
        cli.command,
        Command::Changes { .. }
            | Command::Status { .. }
            | Command::Config(_)
            | Command::Quarantine(_)
    );
    if !quiet {
        crate::logging::init(cli.log_format);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(&context, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(context: &Context, command: Command) -> Result<()> {
    match command {
        Command::Run => run::run(context).await,
        Command::Auth(command) => auth::auth(context, command).await,
        Command::Status { json } => status::status(context, json).await,
        Command::Changes {
            since,
            follow,
            subscription,
        } => changes::changes(context, since, follow, subscription).await,
        Command::Resync { subscription } => {
            subscription::request(
                context,
                &subscription,
                crate::store::status::Request::Resync,
            )
            .await
        }
        Command::Reconcile { subscription } => {
            subscription::request(
                context,
                &subscription,
                crate::store::status::Request::Reconcile,
            )
            .await
        }
        Command::Webhooks(command) => webhooks::webhooks(context, command).await,
        Command::Quarantine(command) => quarantine::quarantine(context, command).await,
        Command::Publish(args) => publish::publish(context, args).await,
        Command::Tasks(command) => tasks::tasks(context, command).await,
        Command::Config(config::ConfigCommand::Check { strict }) => config::check(context, strict),
        #[cfg(feature = "demo")]
        Command::Demo(args) => demo::run(context, args).await,
    }
}
