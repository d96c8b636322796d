//! `syncd webhooks ensure|list`.

use crate::Result;
use crate::cli::Context;

/// `syncd webhooks …`.
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// Register (or update, or re-activate) syncd's webhook for every subscription that uses webhooks.
    Ensure,
    /// List the tenant's webhooks.
    List,
}

/// Runs a `webhooks` command.
pub async fn webhooks(_context: &Context, _command: WebhooksCommand) -> Result<()> {
    Err(crate::Error::Invalid(
        "webhooks commands land with the subscription engine".into(),
    ))
}
