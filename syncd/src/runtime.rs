//! The ground the long-running loops stand on: [`Runtime`], what every loop of the daemon
//! reads (the configuration, the store, the SDK clients, metrics, systemd notifications, the
//! readiness facts, the change-feed notifier and the clock).
//!
//! The daemon (`Daemon::start`) builds it and hands it to the loops (`sync`, `outbox`, `sink`,
//! `source`, `tenants`), each with its own shared state beside it. This module is in the
//! ground layer: it names nothing of the loops, the control plane or the daemon (see
//! ARCHITECTURE.md, "syncd layers").

use std::sync::Arc;

use crate::clock::Clock;
use crate::feed::FeedNotifier;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::systemd::Notifier;
use crate::{Clients, Config, Store};

/// What every long-running loop of the daemon reads.
#[derive(Debug)]
pub struct Runtime {
    /// The configuration in force.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// SDK clients by tenant.
    pub clients: Clients,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// systemd notifications.
    pub notifier: Arc<Notifier>,
    /// Readiness facts for `/readyz`.
    pub health: Health,
    /// Wakes change-feed readers when change rows commit.
    pub feed: FeedNotifier,
    /// What the long-running loops wait on (real; a test's [`crate::clock::ManualClock`]).
    pub clock: Clock,
}
