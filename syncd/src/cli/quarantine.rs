//! `syncd quarantine list|retry`: records whose transform failed or ran out of its budget
//! ([`crate::sync::quarantine`] reads and requeues them).

use super::Context;
use crate::store::quarantine::Quarantined;
use crate::sync::quarantine::{self, Retried};
use crate::{Error, Result, store};

/// `syncd quarantine …`.
#[derive(Debug, clap::Subcommand)]
pub enum QuarantineCommand {
    /// List quarantined records (subscription, id, attempts, last failure, error).
    List {
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
        /// Print JSON lines, with the record as fetched.
        #[arg(long)]
        json: bool,
    },
    /// Fetch quarantined records again (all, those of one subscription, or the given ids).
    Retry {
        /// Only this subscription.
        #[arg(long)]
        subscription: Option<String>,
        /// Record ids (default: every quarantined record selected).
        ids: Vec<i64>,
    },
}

/// One line of `syncd quarantine list`.
pub fn list_line(q: &Quarantined) -> String {
    format!(
        "{:<20} {:>10} {:>8}  {:<24} {}",
        q.subscription, q.id, q.attempts, q.last_at, q.error
    )
}

/// Runs a `quarantine` command.
pub async fn quarantine(context: &Context, command: QuarantineCommand) -> Result<()> {
    let config = context.config()?;
    let known = |name: &Option<String>| -> Result<()> {
        match name {
            Some(name) if !config.subscriptions.iter().any(|s| &s.name == name) => {
                Err(Error::invalid(
                    "--subscription",
                    format!(
                        "no subscription named {name:?} in {}",
                        context.config_path.display()
                    ),
                ))
            }
            _ => Ok(()),
        }
    };
    match command {
        QuarantineCommand::List { subscription, json } => {
            known(&subscription)?;
            let store = store::open_existing(&config.store)?;
            let rows = quarantine::list(&store, subscription).await?;
            if json {
                for row in &rows {
                    let line = serde_json::to_string(row).map_err(|source| Error::Encode {
                        what: "a quarantined record".into(),
                        source,
                    })?;
                    println!("{line}");
                }
                return Ok(());
            }
            println!(
                "{:<20} {:>10} {:>8}  {:<24} ERROR",
                "SUBSCRIPTION", "ID", "ATTEMPTS", "LAST FAILURE"
            );
            for row in &rows {
                println!("{}", list_line(row));
            }
            println!("{} quarantined", rows.len());
            Ok(())
        }
        QuarantineCommand::Retry { subscription, ids } => {
            known(&subscription)?;
            let store = store::open_existing(&config.store)?;
            let Retried {
                queued: selected,
                missing,
            } = quarantine::retry(&store, subscription, ids).await?;
            if selected.is_empty() {
                return Err(Error::NoneQuarantined);
            }
            for (subscription, id) in &selected {
                println!("{subscription} {id}: refetch queued");
            }
            if !missing.is_empty() {
                eprintln!("not quarantined (nothing queued): {missing:?}");
            }
            println!(
                "{} records queued; the running daemon fetches them within seconds and releases each that now stores fine.",
                selected.len()
            );
            Ok(())
        }
    }
}
