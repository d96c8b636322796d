//! Subscriptions: initial load, incremental polls, deletes, reconcile and webhooks.
//! (Scaffold: the engine lands in the next commits.)

use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::{Config, Result, Services};

pub mod cli;

/// Subscription state shared with the control plane.
#[derive(Debug, Default)]
pub struct SyncShared {}

impl SyncShared {
    /// State for the configured subscriptions.
    pub fn new(_config: &Config) -> SyncShared {
        SyncShared {}
    }
}

/// Control-plane routes of the subscriptions (`POST /webhooks/superoffice`).
pub fn routes() -> Router<Arc<Services>> {
    Router::new()
}

/// Registers the configured subscriptions in the store.
pub async fn prepare(_services: &Services) -> Result<()> {
    Ok(())
}

/// Runs one subscription until `shutdown`.
pub async fn run_subscription(
    _services: Arc<Services>,
    _name: &str,
    shutdown: CancellationToken,
) -> Result<()> {
    shutdown.cancelled().await;
    Ok(())
}
