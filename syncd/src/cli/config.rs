//! `syncd config check`.

use clap::Subcommand;

use super::Context;
use crate::Result;

/// `syncd config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration without network access. Secrets that cannot be read here
    /// (e.g. systemd credentials outside the unit) are listed as notes.
    Check {
        /// Secrets that cannot be read are errors.
        #[arg(long)]
        strict: bool,
    },
}

/// Runs `syncd config check`: loads and validates the file, prints a summary and the notes.
pub fn check(context: &Context, strict: bool) -> Result<()> {
    let config = context.config()?;
    let notes = config.check(strict)?;
    println!(
        "{}: ok ({} tenants, {} subscriptions, store {})",
        context.config_path.display(),
        config.tenants.len(),
        config.subscriptions.len(),
        config.store.display()
    );
    for note in notes {
        println!("note: {note}");
    }
    Ok(())
}
