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
//! - [`status`]: what `syncd status` reports, as data.
//! - [`cli`]: every clap type and all printing, one module per command family; `cli::demo`
//!   (cargo feature `demo`, on by default; the systemd build leaves it out) is the only module
//!   that depends on the emulator. Nothing outside `cli` refers back to it.
//! - [`runtime`]: [`Runtime`], what every loop reads; [`health`]: the readiness facts.
//! - [`metrics`], [`systemd`], [`logging`], [`transform`], [`webhook_secret`].
//!
//! Layers, each using only those below it (ARCHITECTURE.md, "syncd layers"; the test
//! `tests::no_arrow_back_up` keeps it so): [`cli`] → the daemon ([`Daemon`], [`Services`],
//! [`supervise`], [`control`], `feed::http`) → the loops ([`sync`], [`outbox`], [`sink`],
//! [`source`], [`tenants`], each given a [`Runtime`] and its own shared state) → the ground
//! ([`runtime`], [`health`], [`store`], [`config`], [`clients`], [`metrics`], [`clock`], the
//! feed's values, the SDK).
//!
//! [`run`] (or [`Daemon::start`]) runs the whole daemon in-process, which is how the tests do it.

pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod control;
pub mod feed;
pub mod hash;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod outbox;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod status;
pub mod store;
pub mod supervise;
pub mod sync;
pub mod systemd;
pub mod tenants;
pub mod transform;
pub mod webhook_secret;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use clients::Clients;
pub use config::Config;
pub use runtime::Runtime;
pub use store::Store;

/// How long shutdown waits for tasks to finish their current page or task.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Everything that can go wrong in syncd.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid: where (the file and line, when known), which key, and
    /// what is wrong. Reads `config: FILE:LINE: KEY: MESSAGE` (the parts that are known);
    /// [`Error::config`] and [`Error::config_key`] build the ones without a file.
    #[error("config: {}", config::describe(.file, .line, .key, .message))]
    Config {
        /// The config file (`(given)` for a secret given in the program), when the problem
        /// is in one.
        file: Option<String>,
        /// The 1-based line of the key in `file`.
        line: Option<usize>,
        /// The key (`subscription[0].poll_interval`, `SYNCD_CONTROL_LISTEN`).
        key: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A statement failed (SQLite's error says which and why).
    #[error("store: {0}")]
    Store(#[from] store::SqliteError),
    /// The database file cannot be used as it is (missing, another schema, not WAL, …);
    /// nothing in it was changed.
    #[error("store: {}", problem.at(path))]
    Database {
        /// The database file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: store::DatabaseProblem,
    },
    /// A statement on the database file failed.
    #[error("store: {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: std::path::PathBuf,
        /// SQLite's error.
        source: store::SqliteError,
    },
    /// A stored value does not have the shape its column promises; the row is kept as it is.
    #[error("store: {column} of {row}: {problem}")]
    Corrupt {
        /// `table.column`.
        column: &'static str,
        /// Which row (e.g. `seq 42`).
        row: String,
        /// What is wrong with the value.
        problem: String,
    },
    /// Encoding a value as JSON failed.
    #[error("encoding {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// The ledger's group commit failed for the batch this change was in (every change of the
    /// batch gets the same error; none of them was committed).
    #[error("the batch this change was committed in failed: {0}")]
    GroupCommit(#[source] Arc<Error>),
    /// The ledger's committer task is gone (it only stops with the daemon).
    #[error("the ledger committer has stopped")]
    CommitterStopped,
    /// Work handed to another task (the blocking pool, a committer) was lost: it panicked or
    /// was cancelled.
    #[error("{what}: the task failed: {source}")]
    Task {
        /// The work.
        what: &'static str,
        /// The join error.
        source: tokio::task::JoinError,
    },
    /// The daemon is shutting down. A loop that returns it stops without a restart; it is
    /// not a failure.
    #[error("shutting down")]
    Shutdown,
    /// A SuperOffice call failed.
    #[error("SuperOffice: {0}")]
    Api(#[from] superoffice::Error),
    /// Input (a payload, a webhook body, a command argument) is invalid: which field and what
    /// is wrong with it. Reads `invalid input: FIELD: MESSAGE`; the intakes (`POST /publish`,
    /// a NATS source, an `outbox` row) answer or record [`Error::input_text`], `FIELD: MESSAGE`.
    /// [`Error::invalid`] builds it.
    #[error("invalid input: {field}: {message}")]
    Invalid {
        /// The field, flag or parameter (`payload.Name`, `payload[0].op`, `--older-than`).
        field: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A task named by a command does not exist.
    #[error("invalid input: no task {0}")]
    NoTask(store::ledger::TaskId),
    /// A command asked for a change of a task that its state does not allow (`tasks retry`
    /// on a pending task, `tasks skip` on a done one).
    #[error("invalid input: task {id} is {state}{}: {change}", rejected_note(*.rejected))]
    TaskState {
        /// The task.
        id: store::ledger::TaskId,
        /// Its state.
        state: store::ledger::TaskState,
        /// Whether it records a request rejected at intake (never retried).
        rejected: bool,
        /// The change that was refused.
        change: store::ledger::TaskChange,
    },
    /// A command named a subscription the configuration does not have.
    #[error("invalid input: no subscription named {name:?} in {}", .config.display())]
    NoSubscription {
        /// The name given.
        name: String,
        /// The configuration file searched.
        config: std::path::PathBuf,
    },
    /// A command needs a subscription's state, and it has never run.
    #[error("invalid input: subscription {0:?} has not run yet")]
    NeverRun(String),
    /// `quarantine retry` selected no quarantined record.
    #[error("invalid input: no quarantined record matches (see `syncd quarantine list`)")]
    NoneQuarantined,
    /// A command needs `--tenant` to pick one of several configured tenants.
    #[error("invalid input: --tenant is required when several tenants are configured")]
    TenantRequired,
    /// A command needs a tenant whose `auth` is another mode.
    #[error("invalid input: tenant {tenant:?} does not use auth = {wanted:?}")]
    AuthMode {
        /// The tenant.
        tenant: String,
        /// The mode the command needs (`oauth`, `system-user`).
        wanted: &'static str,
    },
    /// A record id does not fit the API's 32-bit ids.
    #[error("invalid input: {kind} id {id} does not fit the API")]
    IdRange {
        /// The entity.
        kind: superoffice::entity::EntityKind,
        /// The id.
        id: i64,
    },
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
    /// Local I/O failed (binding the control plane, a socket or secret file, the terminal).
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or address.
        what: String,
        /// The operating system's error (or why the file was refused).
        source: std::io::Error,
    },
    /// The demo's emulator failed.
    #[cfg(feature = "demo")]
    #[error("emulator: {0}")]
    Emulator(#[from] emulator::Error),
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

impl Error {
    /// An [`Error::Invalid`]: `field` (`payload.Name`, `--since`) and what is wrong with it.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The text an intake answers or records for invalid input, `FIELD: MESSAGE` (without the
    /// `invalid input: ` of the Display); `None` for any other error.
    pub fn input_text(&self) -> Option<String> {
        match self {
            Error::Invalid { field, message } => Some(format!("{field}: {message}")),
            _ => None,
        }
    }

    /// An [`Error::Io`] for `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// What [`Error::TaskState`] adds after the state of a task rejected at intake.
fn rejected_note(rejected: bool) -> &'static str {
    if rejected {
        " (rejected at intake; publish it again, corrected)"
    } else {
        ""
    }
}

/// Result alias for syncd.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The control plane's state: the [`Runtime`] the loops share, the loops' own shared state
/// that the control-plane routes reach (webhook queue, outbox wake-up), and the control
/// plane's token and address. It dereferences to its [`Runtime`] (`services.store`).
#[derive(Debug)]
pub struct Services {
    /// What every loop reads (configuration, store, clients, metrics, health, feed, clock).
    pub runtime: Arc<Runtime>,
    /// The control-plane token, read at start-up (`None`: the authenticated routes are off).
    pub control_token: Option<superoffice::auth::Secret>,
    /// Subscription state shared with the control plane (webhook queue).
    pub sync: Arc<sync::SyncShared>,
    /// Outbox state shared with the control plane.
    pub outbox: Arc<outbox::OutboxShared>,
    /// The control plane's bound address (for `public_url = "auto"`).
    pub control_addr: SocketAddr,
}

impl std::ops::Deref for Services {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        &self.runtime
    }
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
        let sync = Arc::new(sync::SyncShared::new(&config, Some(control_addr)));
        let outbox = Arc::new(outbox::OutboxShared::new(&config));
        let runtime = Arc::new(Runtime {
            feed: feed::FeedNotifier::new(last_seq, shutdown.clone()),
            health: health::Health::default(),
            config,
            store,
            clients,
            metrics,
            notifier,
            clock,
        });
        let services = Arc::new(Services {
            runtime: runtime.clone(),
            control_token,
            sync: sync.clone(),
            outbox: outbox.clone(),
            control_addr,
        });

        notifier_status(&runtime, "verifying credentials");
        tenants::verify_all(&runtime).await?;
        sync::prepare(&runtime, &sync).await?;
        outbox::prepare(&runtime, &outbox).await?;

        let tracker = TaskTracker::new();
        let router = control::router(services.clone());
        control::serve::spawn(&tracker, listeners, router, &services, shutdown.clone());
        spawn_loops(&tracker, &services, &shutdown).await?;
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

/// Spawns every long-running loop on `tracker` under the supervisor (one per subscription,
/// sink and source, the outbox worker, retention and tenant re-verification): each is
/// restarted with backoff when it fails, and visible in /readyz, `syncd status` and
/// `syncd_loop_restarts_total`.
async fn spawn_loops(
    tracker: &TaskTracker,
    services: &Services,
    shutdown: &CancellationToken,
) -> Result<()> {
    let (runtime, sync, outbox) = (&services.runtime, &services.sync, &services.outbox);
    let observer = Arc::new(supervise::DaemonObserver::new(runtime.clone()));
    observer.reset().await?;
    let policy = runtime.config.supervisor;
    for subscription in &runtime.config.subscriptions {
        let name = subscription.name.clone();
        let (r, s, t) = (runtime.clone(), sync.clone(), shutdown.clone());
        supervise::spawn(
            tracker,
            format!("sync:{name}"),
            policy,
            observer.clone(),
            shutdown.clone(),
            move || {
                let (runtime, shared, name, shutdown) =
                    (r.clone(), s.clone(), name.clone(), t.clone());
                async move { sync::run_subscription(runtime, shared, &name, shutdown).await }
            },
        );
    }
    {
        let (r, o, t) = (runtime.clone(), outbox.clone(), shutdown.clone());
        supervise::spawn(
            tracker,
            "outbox".into(),
            policy,
            observer.clone(),
            shutdown.clone(),
            move || outbox::run(r.clone(), o.clone(), t.clone()),
        );
    }
    {
        let (r, t) = (runtime.clone(), shutdown.clone());
        supervise::spawn(
            tracker,
            sync::retention::LOOP.into(),
            policy,
            observer.clone(),
            shutdown.clone(),
            move || sync::retention::run(r.clone(), t.clone()),
        );
    }
    for sink in &runtime.config.sinks {
        let name = sink.name.clone();
        let (r, t) = (runtime.clone(), shutdown.clone());
        supervise::spawn(
            tracker,
            sink::loop_name(&name),
            policy,
            observer.clone(),
            shutdown.clone(),
            move || {
                let (runtime, name, shutdown) = (r.clone(), name.clone(), t.clone());
                async move { sink::nats::run(runtime, name, shutdown).await }
            },
        );
    }
    for source in &runtime.config.sources {
        let name = source.name.clone();
        let (r, o, t) = (runtime.clone(), outbox.clone(), shutdown.clone());
        supervise::spawn(
            tracker,
            source::loop_name(&name),
            policy,
            observer.clone(),
            shutdown.clone(),
            move || {
                let (runtime, intake, name, shutdown) =
                    (r.clone(), o.clone(), name.clone(), t.clone());
                async move { source::run(runtime, intake, name, shutdown).await }
            },
        );
    }
    {
        let (r, t) = (runtime.clone(), shutdown.clone());
        supervise::spawn(
            tracker,
            tenants::LOOP.into(),
            policy,
            observer.clone(),
            shutdown.clone(),
            move || tenants::run(r.clone(), t.clone()),
        );
    }
    Ok(())
}

fn notifier_status(runtime: &Runtime, status: &str) {
    runtime.notifier.status(status);
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

#[cfg(test)]
mod tests {
    use super::*;
    use store::ledger::{TaskChange, TaskId, TaskState};

    /// The `.rs` files at `rel` under `src/` (a file, or a directory searched recursively).
    fn sources(rel: &str) -> Vec<std::path::PathBuf> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(rel);
        if path.is_file() {
            return vec![path];
        }
        let mut out = Vec::new();
        let mut dirs = vec![path];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("a source directory") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    /// Where `text` names `crate::NAME` for one of `names`, directly or inside a
    /// `crate::{…}` list: the 1-based line and the name.
    fn mentions(text: &str, names: &[&str]) -> Vec<(usize, String)> {
        let line_of = |at: usize| text[..at].matches('\n').count() + 1;
        let mut found = Vec::new();
        for name in names {
            let needle = format!("crate::{name}");
            for (at, _) in text.match_indices(&needle) {
                let next = text[at + needle.len()..].chars().next();
                if !next.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    found.push((line_of(at), needle.clone()));
                }
            }
        }
        for (at, _) in text.match_indices("crate::{") {
            let list = &text[at..];
            let list = &list[..list.find('}').unwrap_or(list.len())];
            for word in list.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if names.contains(&word) {
                    found.push((line_of(at), format!("crate::{{{word}}}")));
                }
            }
        }
        found
    }

    /// `text` without comment lines and without its test module (from `#[cfg(test)]` on),
    /// each dropped line kept as an empty one so line numbers stay.
    fn code_only(text: &str) -> String {
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        code.lines()
            .map(|l| {
                if l.trim_start().starts_with("//") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The layers of ARCHITECTURE.md ("syncd layers") have no arrow back up: the loops name
    /// nothing of the daemon layer or the CLI (not even in comments), sync and outbox name
    /// each other only through ground types, and the ground's code names no loop and nothing
    /// of the daemon layer.
    #[test]
    fn no_arrow_back_up() {
        const DAEMON: &[&str] = &["Services", "Daemon", "control", "cli", "run"];
        const LOOPS: &[&str] = &["sync", "outbox", "sink", "source", "tenants", "supervise"];
        const GROUND: &[&str] = &[
            "runtime.rs",
            "health.rs",
            "config",
            "store",
            "clients.rs",
            "metrics.rs",
            "systemd.rs",
            "clock.rs",
            "hash.rs",
            "feed/mod.rs",
            "feed/event.rs",
            "feed/subject.rs",
            "webhook_secret.rs",
            "transform.rs",
            "status.rs",
            "logging.rs",
        ];
        let rules: [(&[&str], &[&str], bool); 4] = [
            (
                &["sync", "outbox", "sink", "source.rs", "tenants.rs"],
                DAEMON,
                false,
            ),
            (&["sync"], &["outbox"], false),
            (&["outbox"], &["sync"], false),
            (GROUND, &[DAEMON, LOOPS].concat(), true),
        ];
        let mut offences = Vec::new();
        for (paths, names, code) in rules {
            for file in paths.iter().flat_map(|p| sources(p)) {
                let mut text = std::fs::read_to_string(&file).expect("a readable source file");
                if code {
                    text = code_only(&text);
                }
                for (line, name) in mentions(&text, names) {
                    let file = file
                        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(&file);
                    offences.push(format!("{}:{line}: names {name}", file.display()));
                }
            }
        }
        assert!(
            offences.is_empty(),
            "arrows back up (see ARCHITECTURE.md, syncd layers):\n{}",
            offences.join("\n")
        );
    }

    #[test]
    fn the_layer_check_sees_paths_and_use_lists() {
        let text =
            "use crate::{Error, Services};\nuse crate::control::Health;\n// crate::controller\n";
        assert_eq!(
            mentions(text, &["Services", "control"]),
            vec![
                (2, "crate::control".to_string()),
                (1, "crate::{Services}".to_string())
            ]
        );
    }

    /// The typed variants read exactly as the formatted strings they replace (users and the
    /// CLI tests see them).
    #[test]
    fn typed_errors_read_as_before() {
        let cases = [
            (
                Error::invalid("payload[0].op", "required (add, replace, remove, test)"),
                "invalid input: payload[0].op: required (add, replace, remove, test)",
            ),
            (Error::NoTask(TaskId(7)), "invalid input: no task 7"),
            (
                Error::TaskState {
                    id: TaskId(7),
                    state: TaskState::Dead,
                    rejected: true,
                    change: TaskChange::Retry,
                },
                "invalid input: task 7 is dead (rejected at intake; publish it again, corrected): nothing to retry",
            ),
            (
                Error::TaskState {
                    id: TaskId(8),
                    state: TaskState::Done,
                    rejected: false,
                    change: TaskChange::Retry,
                },
                "invalid input: task 8 is done: nothing to retry",
            ),
            (
                Error::TaskState {
                    id: TaskId(9),
                    state: TaskState::InFlight,
                    rejected: false,
                    change: TaskChange::Skip,
                },
                "invalid input: task 9 is in_flight: it cannot be skipped",
            ),
            (
                Error::NoSubscription {
                    name: "people".into(),
                    config: "/etc/syncd/syncd.toml".into(),
                },
                r#"invalid input: no subscription named "people" in /etc/syncd/syncd.toml"#,
            ),
            (
                Error::NeverRun("people".into()),
                r#"invalid input: subscription "people" has not run yet"#,
            ),
            (
                Error::NoneQuarantined,
                "invalid input: no quarantined record matches (see `syncd quarantine list`)",
            ),
            (
                Error::TenantRequired,
                "invalid input: --tenant is required when several tenants are configured",
            ),
            (
                Error::AuthMode {
                    tenant: "main".into(),
                    wanted: "system-user",
                },
                r#"invalid input: tenant "main" does not use auth = "system-user""#,
            ),
            (
                Error::IdRange {
                    kind: superoffice::entity::EntityKind::Contact,
                    id: 1 << 40,
                },
                "invalid input: Contact id 1099511627776 does not fit the API",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn only_invalid_input_has_an_input_text() {
        assert_eq!(
            Error::invalid("key", "must not be empty").input_text(),
            Some("key: must not be empty".to_string())
        );
        assert_eq!(Error::NoTask(TaskId(1)).input_text(), None);
        assert_eq!(Error::Shutdown.input_text(), None);
    }
}
