//! `syncd resync <subscription>` and `syncd reconcile <subscription>`.

use super::Context;
use crate::{Error, Result, store};

/// Sets a request flag the subscription's loop picks up on its next pass.
pub async fn request(
    context: &Context,
    subscription: &str,
    what: store::status::Request,
) -> Result<()> {
    let config = context.config()?;
    if !config.subscriptions.iter().any(|s| s.name == subscription) {
        return Err(Error::NoSubscription {
            name: subscription.to_string(),
            config: context.config_path.clone(),
        });
    }
    let store = store::open_existing(&config.store)?;
    let name = subscription.to_string();
    let updated = store
        .write(move |tx| store::status::request(tx, &name, what))
        .await?;
    if !updated {
        return Err(Error::NeverRun(subscription.to_string()));
    }
    println!(
        "{subscription}: {} requested; the running daemon picks it up on its next pass.",
        what.as_str()
    );
    Ok(())
}
