//! Publishes through a durable outbox: every change syncd makes in SuperOffice is first a row
//! of the task ledger (`tasks`), then delivered by one worker with per-record ordering,
//! backoff, and exactly-once creates.
//!
//! # Intake (three ways, one ledger)
//!
//! - `syncd publish --action … --entity … [--id N] [--external-key K] [--path k=v]…
//!   [--query k=v]… --payload FILE|- [--key KEY] [--if-unmodified-since T] [--dry-run]`
//!   (`cli::publish`); prints the task id, or with `--dry-run` the HTTP requests it would send.
//! - `POST /publish` on the control plane ([`http`]): the same fields as JSON, the key in the
//!   `Idempotency-Key` header (or `key`). 202 `{task_id, key, state}`; a replay of the same key
//!   and request answers the stored task (200 once it is done); the same key with another
//!   request is 409; invalid input is 400 naming the field.
//! - The `outbox` table (transactional outbox, see `store/migrations/0001_init.sql`): other
//!   local processes INSERT rows in their own transactions; the worker moves them into `tasks`
//!   in one transaction per batch. Every column is read as SQLite stored it and converted with
//!   an error naming the column ([`row`]); a row that does not convert or validate becomes a
//!   `dead` task (`outbox row 17: column payload: a BLOB of 4 bytes, expected JSON text`) that
//!   keeps the raw row, and the rows after it are taken in the same pass.
//!
//! All three validate with [`task::validate`] and insert with [`crate::store::tasks::insert`]. The
//! idempotency key defaults to the sha256 of the canonical request (action, entity, id,
//! external key, path, query, payload, If-Unmodified-Since); keys compare case-insensitively,
//! as SuperOffice compares ForeignKey values.
//!
//! # Ledger states
//!
//! `pending` → `in_flight` (claimed; committed before the first API call, attempts + 1) →
//! `done` | `pending` (retryable failure, `next_attempt_at` after a jittered exponential
//! backoff) | `dead` (retryable failures reached `max_attempts`) | `failed` (the server refused
//! the request, or a create is in doubt) | `conflict` (412/409; both versions kept in
//! `conflict`). Operators move `failed`/`conflict`/`dead` tasks with `syncd tasks retry|skip`.
//! Each transition is one transaction; a create additionally commits the new record's id right
//! after its POST answers, before the key is stored.
//!
//! # Delivery
//!
//! One worker claims due tasks that head their *lane* (entity plus record id, or entity plus
//! record key): a task waits while any earlier task of its lane is not `done` or `skipped`, so
//! a later update never overtakes an earlier create or update of the same record, and a failing
//! one blocks the ones behind it. At most `outbox.concurrency` deliveries hold a slot per
//! tenant; a create gives its slot back as soon as its POST answers, and commits its id and
//! stores its key beside the next task's calls (the HTTP client's per-tenant limit still caps
//! the requests in flight).
//! Creates among a claimed batch have their keys looked up in one `ForeignKeys` archive call.
//! See [`deliver`] for the exactly-once create steps and the conflict policies, and
//! [`recover`] for creates whose outcome is unknown.
//!
//! # Crash recovery and shutdown
//!
//! [`prepare`] turns tasks left `in_flight` into `pending` + `maybe_sent`: their next delivery
//! looks their key up (and, failing that, searches for a keyless record their POST may have
//! left) before anything is sent again. On SIGTERM the worker claims nothing new, gives back
//! claimed tasks that have not started, and lets running deliveries finish their call and
//! commit (up to [`SHUTDOWN_WAIT`]); a delivery cut off after that stays `in_flight` and is
//! resolved on the next start. No transition is ever half-recorded.
//!
//! # Echo rows
//!
//! Each successful write upserts `echoes(entity, id, entity_hash, published_at, task_id)` in
//! the transaction that marks the task done; `entity_hash` is [`crate::hash::entity_hash`] of the
//! entity the write answered (NULL for a delete), so the subscriptions can recognise the
//! change as ours.
//!
//! # Test hooks
//!
//! `SYNCD_FAILPOINT=outbox.after_post[@N]` (also `outbox.after_record`, `outbox.after_key`)
//! parks the delivery at that point of the N-th create (default the first) and prints
//! `syncd: failpoint … reached` on stderr: the crash tests then SIGKILL the daemon between a
//! POST and the commit of its answer. Unset, it costs one atomic load. The hook exists only with
//! the cargo feature `failpoints`, which the crate's own tests turn on (a dev-dependency on
//! itself); in every other build `failpoint` is an empty function and the variable is never read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use chrono::Utc;
use superoffice::entity::EntityKind;
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::{Config, Result, Runtime, Store};

/// The ledger's group commit lives in the store ([`crate::store::commit`]).
pub use crate::store::commit;
pub mod deliver;
pub mod foreign;
pub mod http;
pub mod ledger;
pub mod plan;
pub mod recover;
pub mod row;
pub mod task;
mod worker;
pub mod write;

pub use ledger::Intake;
pub use task::{Action, PublishRequest, Task, TaskId, TaskState};

/// How long shutdown waits for running deliveries before cutting them off (they stay
/// `in_flight` and are resolved on the next start).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Outbox state shared with the control plane.
#[derive(Debug)]
pub struct OutboxShared {
    /// Wakes the worker (new tasks).
    notify: Notify,
    /// The ForeignApp keys.
    keys: foreign::ForeignKeys,
    foreign_app_ready: AtomicBool,
    locks: Mutex<HashMap<EntityKind, Arc<RwLock<()>>>>,
    principal: tokio::sync::OnceCell<Option<i64>>,
}

impl OutboxShared {
    /// State for the configured outbox.
    pub fn new(config: &Config) -> OutboxShared {
        OutboxShared {
            notify: Notify::new(),
            keys: foreign::ForeignKeys::new(&config.outbox),
            foreign_app_ready: AtomicBool::new(false),
            locks: Mutex::new(HashMap::new()),
            principal: tokio::sync::OnceCell::new(),
        }
    }

    /// Wakes the delivery worker.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    fn foreign_app_ready(&self) -> bool {
        self.foreign_app_ready.load(Ordering::Acquire)
    }

    fn set_foreign_app_ready(&self) {
        self.foreign_app_ready.store(true, Ordering::Release);
    }

    fn entity_lock(&self, kind: EntityKind) -> Arc<RwLock<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind)
            .or_default()
            .clone()
    }

    /// Our associate id (`/User/currentPrincipal`), for the orphan search; `None` if unknown.
    async fn principal(&self, client: &superoffice::Client) -> Option<i64> {
        *self
            .principal
            .get_or_init(|| async {
                use superoffice::prelude::ClientUserExt;
                match client.user_get_current_principal().send().await {
                    Ok(principal) => principal.into_inner().associate_id.map(i64::from),
                    Err(error) => {
                        let error = superoffice::Error::from(error);
                        tracing::warn!(%error, "GET /api/v1/User/currentPrincipal failed; the orphan search runs without our associate id");
                        None
                    }
                }
            })
            .await
    }
}

/// Control-plane routes of the outbox (`POST /publish`), with their state: mergeable into a
/// router of any state.
pub fn routes<S>(runtime: Arc<Runtime>, shared: Arc<OutboxShared>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    http::routes(runtime, shared)
}

/// Validates and queues a publish (the library entry point behind the CLI, HTTP and tests).
pub async fn publish(
    store: &Store,
    config: &Config,
    request: &PublishRequest,
    source: &'static str,
) -> Result<Intake> {
    let new = task::validate(config, request)?;
    let synced = new.uses_synced_ius(config);
    store
        .write(move |tx| crate::store::tasks::insert(tx, &new, source, synced, Utc::now()))
        .await
}

/// Resolves tasks left in flight by a previous run: they become `pending` and `maybe_sent`, so
/// their next delivery finds out what the server already has before sending anything. Also
/// creates the ForeignApp app and device (failures are retried before the first create).
pub async fn prepare(runtime: &Runtime, shared: &OutboxShared) -> Result<()> {
    let recovered = runtime
        .store
        .write(|tx| crate::store::tasks::recover_in_flight(tx, Utc::now()))
        .await?;
    if !recovered.is_empty() {
        tracing::warn!(tasks = ?recovered, "outbox: resolving tasks a previous run left in flight");
    }
    if let Some(tenant) = worker::publish_tenant(&runtime.config)
        && let Ok(client) = runtime.clients.get(&tenant)
    {
        match shared.keys.ensure(client).await {
            Ok(()) => shared.set_foreign_app_ready(),
            Err(error) => {
                tracing::warn!(%error, "outbox: could not create the ForeignApp app/device yet")
            }
        }
    }
    worker::refresh_metrics(runtime).await;
    Ok(())
}

/// Delivers tasks until `shutdown`.
pub async fn run(
    runtime: Arc<Runtime>,
    shared: Arc<OutboxShared>,
    shutdown: CancellationToken,
) -> Result<()> {
    // The supervisor (`crate::supervise`) registers the loop with the watchdog and unregisters
    // it only when it stops for shutdown: a failing worker withholds the ping until it reports
    // in again.
    worker::Worker::new(runtime, shared, shutdown).run().await
}

/// Parks the calling thread for good at a named point when `SYNCD_FAILPOINT` asks for it, so
/// a crash test can SIGKILL the process there: `name` fires on the first pass, `name@N` on the
/// N-th.
#[cfg(feature = "failpoints")]
pub(crate) fn failpoint(name: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicU64;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let text = std::env::var("SYNCD_FAILPOINT").ok()?;
        let (point, nth) = match text.split_once('@') {
            Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
            None => (text, 1),
        };
        Some((point, nth))
    });
    if let Some((point, nth)) = target
        && point == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        eprintln!("syncd: failpoint {name} reached");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Without the `failpoints` feature (every non-test build) there are no fail points.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn failpoint(_name: &str) {}
