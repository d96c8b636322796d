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
        return Err(Error::Invalid(format!(
            "no subscription named {subscription:?} in {}",
            context.config_path.display()
        )));
    }
    let store = store::open_existing(&config.store)?;
    let name = subscription.to_string();
    let updated = store
        .write(move |tx| store::status::request(tx, &name, what))
        .await?;
    if !updated {
        return Err(Error::Invalid(format!(
            "subscription {subscription:?} has not run yet"
        )));
    }
    println!(
        "{subscription}: {} requested; the running daemon picks it up on its next pass.",
        what.as_str()
    );
    Ok(())
}
