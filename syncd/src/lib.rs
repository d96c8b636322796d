//! `syncd`: syncs SuperOffice entities into SQLite with a local change feed, and publishes
//! changes back through a durable, idempotent outbox.
//!
//! Layout (shaped like mini-redis: a thin `main.rs`, the daemon as a library):
//! - [`config`]: TOML + `SYNCD_*` overrides, validated offline.
//! - [`store`]: the only module that opens SQLite; migrations, pragmas, blocking work off the
//!   async workers.
//! - [`clients`]: one SDK client per tenant (the SDK runtime does auth, retries, tenant moves).
//! - [`sync`]: subscriptions: initial load, incremental polls, deletes, reconcile, webhooks.
//! - [`outbox`]: publishes: intake (CLI, HTTP, outbox table), delivery, the task ledger.
//! - [`control`]: the control plane (`/healthz`, `/readyz`, `/metrics`, webhook receiver,
//!   `/publish`).
//! - [`supervise`]: restarts a failed long-running loop with backoff (every subscription loop,
//!   the outbox worker, the retention pruner and the tenant checker run under it); [`tenants`]:
//!   tenant health.
//! - [`metrics`], [`systemd`], [`logging`], [`transform`], [`cli`], `demo` (cargo feature `demo`,
//!   on by default; the systemd build leaves it out).
//!
//! [`run`] (or [`Daemon::start`]) runs the whole daemon in-process, which is how the tests do it.

pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod control;
#[cfg(feature = "demo")]
pub mod demo;
pub mod feed;
pub mod logging;
pub mod metrics;
pub mod outbox;
pub mod sink;
pub mod source;
pub mod store;
pub mod supervise;
pub mod sync;
pub mod systemd;
pub mod tenants;
pub mod transform;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use clients::Clients;
pub use config::Config;
pub use store::Store;

/// How long shutdown waits for tasks to finish their current page or task.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Everything that can go wrong in syncd.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; the message names the key (and line).
    #[error("config: {0}")]
    Config(String),
    /// The database could not be opened, migrated, read or written.
    #[error("store: {0}")]
    Store(String),
    /// A SuperOffice call failed.
    #[error("SuperOffice: {0}")]
    Api(#[from] superoffice::Error),
    /// Input (a payload, a webhook body, a command argument) is invalid; names the field.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A subscription stopped itself (mass-delete breaker).
    #[error("subscription {subscription} is degraded: {reason}")]
    Degraded {
        /// The subscription.
        subscription: String,
        /// Why.
        reason: String,
    },
    /// A sink (`[[sink]]`) could not connect, check its stream, or publish.
    #[error("sink {sink}: {message}")]
    Sink {
        /// The sink.
        sink: String,
        /// What failed.
        message: String,
    },
    /// A source (`[[source]]`) could not connect, set up its consumer, or acknowledge.
    #[error("source {name}: {message}")]
    Source {
        /// The source.
        name: String,
        /// What failed.
        message: String,
    },
    /// Local I/O (binding the control plane, reading files).
    #[error("{0}")]
    Io(String),
    /// A sync read an answer of unexpected shape (a list without its `value` array, a row
    /// without its primary key). The run fails and nothing of that answer is written; it is
    /// never read as "no rows" (which a reconcile would take for deletes).
    #[error("subscription {subscription:?}: unexpected answer from {url}: {missing}")]
    UnexpectedAnswer {
        /// The subscription.
        subscription: String,
        /// The request (path and query).
        url: String,
        /// What was missing.
        missing: String,
    },
}

/// Result alias for syncd.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every part of the running daemon shares.
#[derive(Debug)]
pub struct Services {
    /// The configuration in force.
    pub config: Config,
    /// The control-plane token, read at start-up (`None`: the authenticated routes are off).
    pub control_token: Option<superoffice::auth::Secret>,
    /// The database.
    pub store: Store,
    /// SDK clients by tenant.
    pub clients: Clients,
    /// Metrics registry.
    pub metrics: Arc<metrics::Metrics>,
    /// systemd notifications.
    pub notifier: Arc<systemd::Notifier>,
    /// Subscription state shared with the control plane (webhook queue).
    pub sync: sync::SyncShared,
    /// Outbox state shared with the control plane.
    pub outbox: outbox::OutboxShared,
    /// Readiness facts for `/readyz`.
    pub health: control::Health,
    /// The control plane's bound address (for `public_url = "auto"`).
    pub control_addr: SocketAddr,
    /// Wakes change-feed readers when change rows commit.
    pub feed: feed::FeedNotifier,
    /// What the long-running loops wait on (real; a test's [`clock::ManualClock`]).
    pub clock: clock::Clock,
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    services: Arc<Services>,
    control_addr: SocketAddr,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Daemon {
    /// [`Daemon::start`] from the configuration alone: opens the configured store and builds
    /// the clients. Returns the store too.
    pub async fn open_and_start(
        config: Config,
        notifier: Arc<systemd::Notifier>,
        shutdown: CancellationToken,
    ) -> Result<(Daemon, Store)> {
        let store = store::open(&config.store)?;
        let clients = Clients::build(&config)?;
        let daemon = Daemon::start(config, store.clone(), clients, notifier, shutdown).await?;
        Ok((daemon, store))
    }

    /// [`Daemon::open_and_start`] for embedding (the demo, tests, benchmarks): no systemd
    /// notifications.
    pub async fn start_embedded(
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<(Daemon, Store)> {
        Daemon::start_embedded_with_clock(config, shutdown, clock::Clock::Real).await
    }

    /// [`Daemon::start_embedded`] whose loops wait on `clock` (tests: a
    /// [`clock::ManualClock`] they advance instead of sleeping).
    pub async fn start_embedded_with_clock(
        config: Config,
        shutdown: CancellationToken,
        clock: clock::Clock,
    ) -> Result<(Daemon, Store)> {
        let notifier = Arc::new(systemd::Notifier::disabled());
        let store = store::open(&config.store)?;
        let clients = Clients::build(&config)?;
        let daemon =
            Daemon::start_with_clock(config, store.clone(), clients, notifier, shutdown, clock)
                .await?;
        Ok((daemon, store))
    }

    /// Starts everything: registers the subscriptions, verifies each tenant's credentials,
    /// binds the control plane, starts one task per subscription and the outbox worker, then
    /// sends `READY=1`. Returns once running; [`Daemon::wait`] waits for shutdown.
    pub async fn start(
        config: Config,
        store: Store,
        clients: Clients,
        notifier: Arc<systemd::Notifier>,
        shutdown: CancellationToken,
    ) -> Result<Daemon> {
        Daemon::start_with_clock(
            config,
            store,
            clients,
            notifier,
            shutdown,
            clock::Clock::Real,
        )
        .await
    }

    /// [`Daemon::start`] whose loops wait on `clock` ([`clock`]).
    pub async fn start_with_clock(
        config: Config,
        store: Store,
        clients: Clients,
        notifier: Arc<systemd::Notifier>,
        shutdown: CancellationToken,
        clock: clock::Clock,
    ) -> Result<Daemon> {
        let metrics = clients.metrics().clone();
        let listeners = control::serve::Listeners::bind(&config.control).await?;
        let control_addr = listeners.local_addr()?;
        let control_token = config.control.resolve_token()?;
        let last_seq = store.read(store::feed::last_seq).await?;
        let services = Arc::new(Services {
            control_token,
            feed: feed::FeedNotifier::new(last_seq, shutdown.clone()),
            sync: sync::SyncShared::new(&config),
            outbox: outbox::OutboxShared::new(&config),
            health: control::Health::default(),
            control_addr,
            config,
            store,
            clients,
            metrics,
            notifier,
            clock,
        });

        notifier_status(&services, "verifying credentials");
        tenants::verify_all(&services).await?;
        sync::prepare(&services).await?;
        outbox::prepare(&services).await?;

        let tracker = TaskTracker::new();
        let router = control::router(services.clone());
        control::serve::spawn(&tracker, listeners, router, &services, shutdown.clone());
        // Every long-running loop runs under the supervisor: restarted with backoff when it
        // fails, visible in /readyz, `syncd status` and syncd_loop_restarts_total.
        let observer = Arc::new(supervise::DaemonObserver::new(services.clone()));
        observer.reset().await?;
        let policy = services.config.supervisor;
        for subscription in &services.config.subscriptions {
            let name = subscription.name.clone();
            let (s, t) = (services.clone(), shutdown.clone());
            supervise::spawn(
                &tracker,
                format!("sync:{name}"),
                policy,
                observer.clone(),
                shutdown.clone(),
                move || {
                    let (services, name, shutdown) = (s.clone(), name.clone(), t.clone());
                    async move { sync::run_subscription(services, &name, shutdown).await }
                },
            );
        }
        {
            let (s, t) = (services.clone(), shutdown.clone());
            supervise::spawn(
                &tracker,
                "outbox".into(),
                policy,
                observer.clone(),
                shutdown.clone(),
                move || outbox::run(s.clone(), t.clone()),
            );
        }
        {
            let (s, t) = (services.clone(), shutdown.clone());
            supervise::spawn(
                &tracker,
                sync::retention::LOOP.into(),
                policy,
                observer.clone(),
                shutdown.clone(),
                move || sync::retention::run(s.clone(), t.clone()),
            );
        }
        for sink in &services.config.sinks {
            let name = sink.name.clone();
            let (s, t) = (services.clone(), shutdown.clone());
            supervise::spawn(
                &tracker,
                sink::loop_name(&name),
                policy,
                observer.clone(),
                shutdown.clone(),
                move || {
                    let (services, name, shutdown) = (s.clone(), name.clone(), t.clone());
                    async move { sink::nats::run(services, name, shutdown).await }
                },
            );
        }
        for source in &services.config.sources {
            let name = source.name.clone();
            let (s, t) = (services.clone(), shutdown.clone());
            supervise::spawn(
                &tracker,
                source::loop_name(&name),
                policy,
                observer.clone(),
                shutdown.clone(),
                move || {
                    let (services, name, shutdown) = (s.clone(), name.clone(), t.clone());
                    async move { source::run(services, name, shutdown).await }
                },
            );
        }
        {
            let (s, t) = (services.clone(), shutdown.clone());
            supervise::spawn(
                &tracker,
                tenants::LOOP.into(),
                policy,
                observer.clone(),
                shutdown.clone(),
                move || tenants::run(s.clone(), t.clone()),
            );
        }
        tracker.close();
        services.health.set_started();
        services.notifier.ready();
        notifier_status(
            &services,
            &format!(
                "running {} subscriptions",
                services.config.subscriptions.len()
            ),
        );
        tracing::info!(control = %control_addr, subscriptions = services.config.subscriptions.len(), "syncd is running");
        Ok(Daemon {
            services,
            control_addr,
            tracker,
            shutdown,
        })
    }

    /// The control plane's bound address.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// The shared services (tests, the demo's progress display).
    pub fn services(&self) -> &Arc<Services> {
        &self.services
    }

    /// Waits until the shutdown token is cancelled, then for every task to finish (at most
    /// [`SHUTDOWN_GRACE`]; a page transaction that has not committed by then is rolled back).
    pub async fn wait(self) -> Result<()> {
        self.shutdown.cancelled().await;
        self.services.notifier.stopping();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "tasks did not stop within {:?}; exiting anyway (uncommitted pages roll back)",
                SHUTDOWN_GRACE
            );
        }
        Ok(())
    }
}

fn notifier_status(services: &Services, status: &str) {
    services.notifier.status(status);
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    store: Store,
    clients: Clients,
    shutdown: CancellationToken,
) -> Result<()> {
    let notifier = Arc::new(systemd::Notifier::from_env());
    Daemon::start(config, store, clients, notifier, shutdown)
        .await?
        .wait()
        .await
}
