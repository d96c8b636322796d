//! `syncd changes [--since N] [--follow] [--subscription S]`: the change feed as JSON lines.

use std::io::Write as _;
use std::time::Duration;

use super::Context;
use crate::{Error, Result, store};

/// Runs `syncd changes`: prints the changes after `since` (one JSON object a line); with
/// `follow`, keeps printing new ones until the reader goes away.
pub async fn changes(
    context: &Context,
    since: i64,
    follow: bool,
    subscription: Option<String>,
) -> Result<()> {
    let config = context.config()?;
    let store = store::open_read_only(&config.store)?;
    let tenants = crate::feed::Tenants::from_config(&config);
    let mut last = since;
    loop {
        let batch = {
            let store = store.clone();
            let subscription = subscription.clone();
            let tenants = tenants.clone();
            tokio::task::spawn_blocking(move || {
                changes_after(&store, &tenants, last, subscription.as_deref(), 10_000)
            })
            .await
            .map_err(|source| Error::Task {
                what: "reading changes",
                source,
            })??
        };
        let mut out = std::io::stdout().lock();
        for change in &batch {
            let line = serde_json::to_string(change).map_err(|source| Error::Encode {
                what: format!("change seq {}", change.seq),
                source,
            })?;
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // the reader went away (e.g. `| head`)
            }
            last = change.seq;
        }
        let _ = out.flush();
        drop(out);
        if batch.len() < 10_000 {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Changes after `since`, oldest first (at most `limit`), in the shape `syncd changes` prints
/// ([`crate::feed::ChangeEvent`], `syncd/docs/change-event.schema.json`); an error when
/// retention already deleted changes after `since` (never a silent skip).
fn changes_after(
    store: &store::Store,
    tenants: &crate::feed::Tenants,
    since: i64,
    subscription: Option<&str>,
    limit: usize,
) -> Result<Vec<crate::feed::ChangeEvent>> {
    match store
        .read_blocking(|conn| store::feed::page_after(conn, since, subscription, limit, tenants))?
    {
        store::feed::FeedPage::Changes(events) => Ok(events),
        store::feed::FeedPage::Gone { since, oldest } => Err(Error::invalid(
            "--since",
            format!(
                "{since}: changes after it were deleted by retention (the oldest kept is {oldest})"
            ),
        )),
    }
}
