//! `syncd publish` and `syncd tasks …`.

use crate::Result;
use crate::cli::Context;

/// `syncd publish …`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {}

/// `syncd tasks …`.
#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// List tasks.
    List,
}

/// Runs `syncd publish`.
pub async fn publish(_context: &Context, _args: PublishArgs) -> Result<()> {
    Err(crate::Error::Invalid(
        "publish lands with the outbox".into(),
    ))
}

/// Runs a `tasks` command.
pub async fn tasks(_context: &Context, _command: TasksCommand) -> Result<()> {
    Err(crate::Error::Invalid(
        "tasks commands land with the outbox".into(),
    ))
}
