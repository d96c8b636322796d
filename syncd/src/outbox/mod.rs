//! Publishes through a durable outbox. (Scaffold: the ledger and delivery land next.)

use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::{Config, Result, Services};

pub mod cli;

/// Outbox state shared with the control plane.
#[derive(Debug, Default)]
pub struct OutboxShared {}

impl OutboxShared {
    /// State for the configured outbox.
    pub fn new(_config: &Config) -> OutboxShared {
        OutboxShared {}
    }
}

/// Control-plane routes of the outbox (`POST /publish`).
pub fn routes() -> Router<Arc<Services>> {
    Router::new()
}

/// Resolves tasks left in flight by a previous run.
pub async fn prepare(_services: &Services) -> Result<()> {
    Ok(())
}

/// Delivers tasks until `shutdown`.
pub async fn run(_services: Arc<Services>, shutdown: CancellationToken) -> Result<()> {
    shutdown.cancelled().await;
    Ok(())
}
