//! `syncd webhooks ensure|list`.

use super::Context;
use crate::sync::{ensure, secret};
use crate::{Clients, Error, Result};

/// `syncd webhooks …`.
#[derive(Debug, clap::Subcommand)]
pub enum WebhooksCommand {
    /// Register (or update, or re-activate) syncd's webhook for every subscription that uses
    /// webhooks, with the configured secret or the state directory's (generated when missing).
    Ensure,
    /// List the tenant's webhooks.
    List,
}

/// Runs a `webhooks` command.
pub async fn webhooks(context: &Context, command: WebhooksCommand) -> Result<()> {
    let config = context.config()?;
    let clients = Clients::build(&config)?;
    match command {
        WebhooksCommand::Ensure => {
            let target = ensure::target_url(&config, None)?.ok_or_else(|| {
                Error::config_key(
                    "control.public_url",
                    "not set: it is the HTTPS URL SuperOffice posts webhooks to (this daemon's /webhooks/superoffice behind your proxy)",
                )
            })?;
            if ensure::wanted_events(&config).is_empty() {
                println!(
                    "no subscription uses webhooks (webhooks = true on an entity that has events); nothing to register"
                );
                return Ok(());
            }
            // Nothing registers a webhook without a secret: without a configured one, the
            // state directory's file is used (generated now when there is none).
            let found = secret::resolve(&config, secret::Generate::IfMissing)?
                .ok_or_else(|| Error::config("no webhook secret could be resolved".into()))?;
            match (found.source, &found.path) {
                (secret::SecretSource::Generated, Some(path)) => println!(
                    "webhook secret: generated and stored in {} (mode 0600); restart or reload the daemon (systemctl reload syncd) so its receiver uses it",
                    path.display()
                ),
                (secret::SecretSource::File, Some(path)) => {
                    println!("webhook secret: from {}", path.display())
                }
                _ => println!("webhook secret: control.webhook_secret"),
            }
            for done in ensure::ensure(&config, &clients, &target, &found.secret).await? {
                println!(
                    "{}: webhook {} (id {}) {} → {} [{}]",
                    done.tenant,
                    done.name,
                    done.id.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
                    done.action,
                    done.target_url,
                    done.events.join(", ")
                );
                if !done.duplicates.is_empty() {
                    println!(
                        "  note: other webhooks named {} exist (ids {:?}); they were left alone",
                        done.name, done.duplicates
                    );
                }
            }
            Ok(())
        }
        WebhooksCommand::List => {
            for (tenant, client) in clients.iter() {
                let hooks = ensure::list(client, None).await?;
                println!("{tenant}: {} webhooks", hooks.len());
                for hook in hooks {
                    println!(
                        "  {:>5}  {:<24} {:<14} {}  events: {}",
                        hook.webhook_id.map(|id| id.to_string()).unwrap_or_default(),
                        hook.name.unwrap_or_default(),
                        hook.state.map(|s| s.to_string()).unwrap_or_default(),
                        hook.target_url.unwrap_or_default(),
                        hook.events.unwrap_or_default().join(",")
                    );
                }
            }
            Ok(())
        }
    }
}
