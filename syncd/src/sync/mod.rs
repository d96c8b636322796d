//! Subscriptions: change-tracking sync of SuperOffice entities into SQLite, with a change feed,
//! deletes, webhooks and a mass-delete breaker.
//!
//! # What is stored
//!
//! One row per record in `records` (JSON, content hash, source timestamp, tombstone) and one
//! row per observed change in `changes` (`insert`/`update`/`delete`, exposed as the
//! `change_feed` view). A change is written only when the content hash differs from the stored
//! one, so re-reading unchanged data emits nothing.
//!
//! - `shape = "row"` (default): the archive columns of each row, one request per page. The key,
//!   last-modified and registered columns (and `status` for tickets) are always selected, then
//!   the configured `columns`. Stored: the selected columns (without `PrimaryKey`/`EntityName`).
//! - `shape = "entity"`: rows give (key, timestamps); each row whose timestamp differs from the
//!   stored one is fetched with `GET /api/v1/{Entity}/{id}` (at most `concurrency` at a time).
//!   Stored: the entity without `_Links`, `TableRight` and `FieldProperties`. Timestamps have
//!   one-second precision, so an entity is fetched only once the server's clock has provably
//!   left the second of its timestamp (estimated from the timestamps read and our clock; see
//!   `Engine::build`): a second edit in the same second is then in what we fetch, and a later
//!   edit has a later timestamp. Rows changed within the last second wait for the next pass
//!   (the next window starts no later than them); nothing blocks.
//! - `transform` (jq) runs on that JSON before it is stored and hashed; `null` skips the record.
//!   It runs on [`crate::transform::Pool`] within `transform_timeout`/`transform_max_output`;
//!   a record it fails for is quarantined in its page's transaction (the rest of the page is
//!   stored, the cursor moves on) and is not transformed again while unchanged;
//!   `syncd quarantine retry` queues a targeted refetch for it (see [`quarantine`]).
//! - The hash is SHA-256 of canonical JSON ([`crate::hash`]); echo detection uses
//!   [`crate::hash::entity_hash`], shared with the outbox.
//!
//! # The algorithm
//!
//! **Initial load** (and `syncd resync`): keyset paging on the primary key (`$orderBy=pk`,
//! `pk gt last`), the configured filter applied, pages of `page_size`.
//! The paging is the SDK's (`superoffice::paginate::Keyset`, driven from `scan.rs`): it resumes
//! after the cursor's key, and on full scans a short page is the end only once a request for the
//! rows after it comes back empty (else the server caps `$top`, and the cap is kept in
//! `cursors.page_cap`).
//!
//! **Incremental pass**: the same keyset paging, restricted to a window
//! `(lastModified after D-1 or registered after D-1)`. `D` (`cursors.window_from`) is the day
//! of the watermark minus `overlap_days` (`after` on a date column compares days and whether it
//! includes the day is undocumented, so the day before is given; an inclusive server just
//! returns one more day). The registered column is part of the window because rows never
//! edited carry `0001-01-01` as last-modified; the watermark is max(registered, updated) with
//! `0001-01-01` counting as unset. Tickets use `lastChanged`/`createdAt` with `afterTime` (≥) and
//! an instant minus `overlap_days`. The whole window is re-read every pass; hashes make the
//! overlap free of changes.
//!
//! *Why keyset on the key inside the window rather than ordering by (last-modified, key):*
//! last-modified filters only compare days, so there is no exact keyset on it, and `$skip`
//! paging shifts when rows change during the pass (an edited row jumps to the end and pushes an
//! unread row back into an already-read page). Keyset on the key is stable and cheap for the
//! server (SuperOffice's own advice: order by the primary key). A row edited during the pass
//! after its key was passed is read by the next pass: its new timestamp is after the pass
//! started, and the next window starts at or before that.
//!
//! **Watermark**: the highest source timestamp committed. It only moves in the transaction of
//! the last page of a whole pass, never past data that is not committed; the next window
//! starts at min(watermark, start of that pass) minus the overlap (a long load cannot skip
//! edits made during it).
//!
//! **Crash safety**: each page — its records, its change rows and the cursor's resume
//! position (`cursors.resume`: window, last key, highest timestamp so far, child scope) — is
//! ONE transaction. A restart continues the pass after the last committed key with the same
//! window; a page that was not committed is read again, and what was committed compares equal,
//! so nothing is emitted twice and nothing is lost. While page N is written, page N+1 is
//! already being fetched.
//!
//! # Deletes
//!
//! - **Webhooks**: `*.deleted` / `*.softdeleted` (and any other event) queue a targeted refetch.
//!   A record the archive no longer lists is confirmed with `GET` (404, `Deleted`, a set
//!   `DeletedDate`, or ticket status Deleted) before it gets a tombstone and a `delete` change.
//! - **Reconcile** (every `reconcile_interval`, or `syncd reconcile SUB`): keyset pages of the
//!   primary key only, diffed range by range against the live records; each candidate is
//!   confirmed by `GET`.
//! - **Tickets** have no delete event: status Deleted (4) is a delete (`delete` change,
//!   tombstone); a ticket that leaves that status comes back with an `insert`.
//! - **Restores**: a record taken out of the recycle bin reappears in the window (its
//!   `updated` moves) and comes back with an `insert`.
//! - **Mass-delete breaker**: when the deletes one reconcile (or one batch of webhook
//!   refetches) would apply exceed `mass_delete_percent` % of the live rows or
//!   `mass_delete_absolute` (default 10 % / 1000), nothing is deleted: the subscription is
//!   marked `degraded` with the reason (`syncd status`, `syncd_subscription_degraded`), keeps
//!   syncing inserts and updates, and holds back deletes inferred from absence. To clear it:
//!   `syncd reconcile SUB` applies the deletes (the operator confirms them) and lifts the
//!   breaker; `syncd resync SUB` reloads everything and then reconciles with the breaker on.
//!
//! # Echoes of our own publishes
//!
//! With `outbox.echo_suppression`, a change of a record that has a row in `echoes` (written by
//! the outbox after its own write) is stored but not reported when it is that write: entity
//! shape when the fetched entity's [`crate::hash::entity_hash`] equals `echoes.entity_hash`; row shape
//! when the row's timestamp is at most `published_at` + 2 s. The echo row is consumed (deleted)
//! by the first change of the record either way. Deletes are never suppressed.
//! Known window: the echo row is written when the outbox commits the write's answer, so a
//! pass that reads the record between the server applying the write and that commit (the
//! answer's way back plus one group commit) reports the write as an ordinary update.
//!
//! # Webhooks
//!
//! See [`webhook`] (receiver: signature, dedup, queue) and [`ensure`] (registration:
//! `syncd webhooks ensure`, and at startup when `control.public_url` is set; `auto` = this
//! daemon's control plane). Polling stays on: webhooks only make changes arrive sooner.
//! `syncd_unannounced_changes_total` counts changes a poll or reconcile found that no webhook
//! announced within max(10 min, 3 poll intervals).
//!
//! **Stretched polls.** A poll re-reads every row changed since the start of the window's
//! first day (last-modified filters compare days), so on a busy tenant each poll reads far
//! more rows than changed since the previous one. While webhooks are healthy the time between
//! polls doubles after each poll, up to `poll_interval_max` (default 2 h with webhooks on;
//! equal to `poll_interval`: no stretching). Healthy means: the subscription has webhooks
//! and its entity has events; this daemon found (or made) the tenant's registration active
//! at its last check (so only with `control.public_url` set); every queued refetch since
//! the last failure succeeded; and the poll found no change that no webhook announced. An
//! unannounced change (found by a poll or a reconcile), a failed refetch batch, a failed
//! pass or reconcile, a full load or a failed registration check puts the interval back to
//! `poll_interval` at once. Only the next wait changes: what a poll finds goes into the feed
//! as always, and reconcile keeps its own interval. The interval in force is the
//! `syncd_poll_interval_seconds` gauge and `syncd status`'s POLL column, and each change is
//! logged at info (with the reason when it shrinks). Known limit: a poll that reads a row
//! between its edit and the webhook's arrival counts it as unannounced, so on a busy tenant
//! webhook latency alone can reset the interval now and then.
//!
//! # Child subscriptions
//!
//! `parent = "contacts"` makes a subscription run once per live record of the parent
//! subscription ("scope"). `{column}` (or `{parent.column}`) placeholders in `filter`, `query`
//! values and `path.archive` take that column's value from the parent's stored JSON
//! (case-insensitive; `{id}` is the parent's key; in `filter`, `'` in string values is
//! doubled). Example, the persons of every synced contact:
//!
//! ```toml
//! [[subscription]]
//! name = "persons"
//! entity = "person"
//! parent = "contacts"
//! filter = "contactId eq {contactId}"
//! ```
//!
//! A scope seen for the first time is loaded in full (and remembered in `scopes`), afterwards
//! it reads the shared incremental window. Child records remember their parent (`parent_id`);
//! reconcile diffs each scope and also confirms children whose parent is gone. Webhook events
//! refetch records the child already holds; unknown ones trigger a pass. `path` accepts only
//! `archive` (list from `/api/v1/Archive/{archive}` instead of `/api/v1/{Entity}`). A record
//! that stops matching `filter` is kept as last seen (only confirmed deletes remove records).
//!
//! # Runs and metrics
//!
//! Every pass, reconcile and failed webhook batch is a `runs` row (kind, status, counts,
//! error); rows a killed process left `running` become `aborted` at startup. The loop feeds
//! `syncd_rows`, `syncd_changes_total`, `syncd_rows_read_total`,
//! `syncd_poll_interval_seconds`, `syncd_lag_seconds`,
//! `syncd_last_success_timestamp_seconds`, `syncd_subscription_degraded`, `syncd_runs_total`,
//! `syncd_errors_total`, `syncd_webhook_events_total` and `syncd_unannounced_changes_total`,
//! reports to the systemd watchdog at least every heartbeat (also while sleeping) and honours
//! `syncd resync` / `syncd reconcile` within a few seconds. A failed pass is retried with
//! backoff (1 s doubling, at most the poll interval); the SDK already retries single requests.
//! An error the loop itself cannot handle (e.g. the database failing) ends
//! [`run_subscription`]; the supervisor ([`crate::supervise`]) restarts it. The refetch queue
//! is drained for every subscription (webhooks and `syncd quarantine retry` fill it).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::store::records;
use crate::store::runs::{self, Registration, RunEnd, RunStatus};
use crate::store::types::{PassKind, UtcTime};
use crate::store::webhooks;
use crate::{Error, Result, Runtime};

mod breaker;
mod build;
pub mod engine;
pub mod ensure;
pub mod plan;
pub mod quarantine;
mod reconcile;
mod refetch;
pub mod retention;
mod scan;
/// The webhook secret in force (a ground module, [`crate::webhook_secret`]).
pub use crate::webhook_secret as secret;
pub mod webhook;

use engine::{Engine, Outcome};
use plan::Plan;

/// How often the loop re-reads its cursor flags (`syncd resync`/`reconcile`) while idle.
const FLAG_CHECK: Duration = Duration::from_secs(2);

/// How long a webhook wake-up waits for more events before the batch is fetched.
const WEBHOOK_GATHER: Duration = Duration::from_millis(150);

/// Webhook registration is re-checked at most this often (startup, after reconciles).
const ENSURE_EVERY: Duration = Duration::from_secs(60);

/// Subscription state shared with the control plane: the compiled subscriptions, a wake-up
/// per subscription (webhooks), the webhook secret in force and the registration state.
#[derive(Debug)]
pub struct SyncShared {
    plans: BTreeMap<String, Plan>,
    errors: Vec<String>,
    wakes: BTreeMap<String, Arc<Notify>>,
    ensured: tokio::sync::Mutex<Option<Instant>>,
    /// The control plane's bound address, for `control.public_url = "auto"` (`None`: not
    /// serving).
    control_addr: Option<SocketAddr>,
    /// Resolved once in [`prepare`]; `Some(None)`: there is no secret.
    webhook_secret: std::sync::OnceLock<Option<secret::WebhookSecret>>,
    no_secret_logged: std::sync::atomic::AtomicBool,
    /// The tenants whose webhook registration the last [`SyncShared::ensure_webhooks`] found
    /// (or made) active; empty until one succeeded, cleared when one fails.
    registered: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl SyncShared {
    /// Compiles the configured subscriptions (errors surface in [`prepare`]); `control_addr`
    /// is the control plane's bound address, which `public_url = "auto"` registers.
    pub fn new(config: &Config, control_addr: Option<SocketAddr>) -> SyncShared {
        let mut plans = BTreeMap::new();
        let mut errors = Vec::new();
        let mut wakes = BTreeMap::new();
        for subscription in &config.subscriptions {
            match Plan::compile(subscription) {
                Ok(plan) => {
                    wakes.insert(plan.name.clone(), Arc::new(Notify::new()));
                    plans.insert(plan.name.clone(), plan);
                }
                Err(error) => errors.push(error.to_string()),
            }
        }
        SyncShared {
            plans,
            errors,
            wakes,
            ensured: tokio::sync::Mutex::new(None),
            control_addr,
            webhook_secret: std::sync::OnceLock::new(),
            no_secret_logged: std::sync::atomic::AtomicBool::new(false),
            registered: std::sync::Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// Whether this daemon found (or made) `tenant`'s webhook registration active at its last
    /// check (see [`SyncShared::ensure_webhooks`]); false without `control.public_url`, where
    /// the daemon does not manage the registration.
    pub fn webhooks_registered(&self, tenant: &str) -> bool {
        self.registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(tenant)
    }

    /// Remembers which tenants' registrations are active (all of them forgotten on `None`).
    fn set_registered(&self, tenants: Option<Vec<String>>) {
        let mut registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        registered.clear();
        registered.extend(tenants.into_iter().flatten());
    }

    /// The webhook secret in force (`None`: none was configured or generated, or [`prepare`]
    /// has not run; every webhook is then refused).
    pub fn webhook_secret(&self) -> Option<&secret::WebhookSecret> {
        self.webhook_secret.get().and_then(Option::as_ref)
    }

    /// Logs, once per daemon, that a webhook was refused because there is no secret.
    fn log_no_secret_once(&self) {
        if !self
            .no_secret_logged
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::warn!(
                "webhook refused (401): there is no webhook secret (control.webhook_secret is not set and there is no webhook_secret file in the state directory); set control.public_url or run `syncd webhooks ensure` to generate and register one. Logged once."
            );
        }
    }

    /// A compiled subscription.
    pub fn plan(&self, name: &str) -> Result<&Plan> {
        self.plans
            .get(name)
            .ok_or_else(|| Error::config(format!("no subscription named {name:?}")))
    }

    /// The subscriptions of an entity (they share `echoes`).
    pub fn peers(&self, kind: superoffice::entity::EntityKind) -> Vec<String> {
        self.plans
            .values()
            .filter(|p| p.kind == kind)
            .map(|p| p.name.clone())
            .collect()
    }

    /// Wakes a subscription's loop (a webhook queued work for it).
    pub fn wake(&self, name: &str) {
        if let Some(notify) = self.wakes.get(name) {
            notify.notify_one();
        }
    }

    /// The subscriptions that follow webhook `entity` of the tenant with `context` (the only
    /// tenant when the payload names none or an unknown one and there is just one).
    pub fn targets(&self, config: &Config, context: Option<&str>, entity: &str) -> Vec<String> {
        let tenant = context
            .and_then(|c| {
                config
                    .tenants
                    .iter()
                    .find(|t| t.customer_id.eq_ignore_ascii_case(c))
            })
            .or_else(|| (config.tenants.len() == 1).then(|| &config.tenants[0]));
        let Some(tenant) = tenant else {
            return Vec::new();
        };
        self.plans
            .values()
            .filter(|p| {
                p.webhooks
                    && p.tenant == tenant.name
                    && p.kind
                        .webhook_entity()
                        .is_some_and(|e| e.eq_ignore_ascii_case(entity))
            })
            .map(|p| p.name.clone())
            .collect()
    }

    /// Registers (or repairs) the webhook when `control.public_url` is set, at most every
    /// minute. Failures are logged: polling continues without webhooks.
    async fn ensure_webhooks(&self, runtime: &Runtime) {
        if !self.plans.values().any(|p| p.webhooks) {
            return;
        }
        let target = match ensure::target_url(&runtime.config, self.control_addr) {
            Ok(Some(target)) => target,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "webhooks not registered");
                return;
            }
        };
        let Some(secret) = self.webhook_secret() else {
            tracing::warn!("webhooks not registered: there is no webhook secret");
            return;
        };
        let mut last = self.ensured.lock().await;
        if last.is_some_and(|at| at.elapsed() < ENSURE_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        match ensure::ensure(&runtime.config, &runtime.clients, &target, &secret.secret).await {
            Ok(done) => {
                for e in &done {
                    if e.action != "unchanged" {
                        tracing::info!(tenant = %e.tenant, webhook = %e.name, id = ?e.id, action = e.action, target = %e.target_url, "webhook registration");
                    }
                }
                self.set_registered(Some(done.into_iter().map(|e| e.tenant).collect()));
            }
            Err(error) => {
                self.set_registered(None);
                tracing::warn!(%error, "registering the webhook failed; polling continues")
            }
        }
    }
}

/// Control-plane routes of the subscriptions (`POST /webhooks/superoffice`), with their
/// state: mergeable into a router of any state.
pub fn routes<S>(runtime: Arc<Runtime>, shared: Arc<SyncShared>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(ensure::RECEIVER_PATH, post(webhook::receive))
        .with_state((runtime, shared))
}

/// Registers the configured subscriptions and their cursors, marks runs a killed process left
/// behind as aborted, initialises the gauges. Configuration problems (a subscription that does
/// not compile, an unknown tenant) are errors naming the subscription.
pub async fn prepare(runtime: &Runtime, shared: &SyncShared) -> Result<()> {
    if !shared.errors.is_empty() {
        return Err(Error::config(shared.errors.join("; ")));
    }
    for plan in shared.plans.values() {
        if !runtime.clients.knows(&plan.tenant) {
            return Err(Error::config(format!(
                "subscription {:?}: no tenant {:?}",
                plan.name, plan.tenant
            )));
        }
    }
    let plans: Vec<Plan> = shared.plans.values().cloned().collect();
    let states = runtime
        .store
        .write(move |tx| {
            let now = UtcTime::now();
            let aborted = runs::abort_stale_runs(tx, now)?;
            if aborted > 0 {
                tracing::info!(runs = aborted, "marked runs of a stopped process as aborted");
            }
            let mut out = Vec::new();
            for plan in &plans {
                let registration = Registration {
                    name: &plan.name,
                    kind: plan.kind,
                    fingerprint: &plan.fingerprint,
                };
                if runs::register(tx, registration, now)? {
                    tracing::warn!(subscription = %plan.name, "the subscription's columns, filter or transform changed: resyncing it");
                    // The resync transforms every record again.
                    crate::store::quarantine::clear(tx, &plan.name)?;
                }
                out.push((
                    plan.name.clone(),
                    records::live_count(tx, &plan.name)?,
                    runs::state(tx, &plan.name)?,
                    crate::store::quarantine::count(tx, &plan.name)?,
                ));
            }
            Ok(out)
        })
        .await?;
    for (name, live, state, quarantined) in states {
        let labels = [("subscription", name.as_str())];
        runtime.metrics.set("syncd_rows", &labels, live as f64);
        runtime
            .metrics
            .set("syncd_quarantined_records", &labels, quarantined as f64);
        if quarantined > 0 {
            tracing::warn!(subscription = %name, quarantined, "records are quarantined (their transform failed): see `syncd quarantine list`");
        }
        runtime.metrics.set(
            "syncd_subscription_degraded",
            &labels,
            if state.degraded.is_some() { 1.0 } else { 0.0 },
        );
        if let Some(reason) = &state.degraded {
            tracing::warn!(subscription = %name, %reason, "subscription is degraded");
        }
    }
    if shared.plans.values().any(|p| p.webhooks) && runtime.config.control.public_url.is_none() {
        tracing::info!(
            "webhooks are on but control.public_url is not set: register them with `syncd webhooks ensure`, or rely on polling"
        );
    }
    prepare_webhook_secret(runtime, shared).await
}

/// Resolves the webhook secret in force (see [`secret`]): generated when `public_url` is set
/// and a subscription uses webhooks, else only configured or read from the state directory.
async fn prepare_webhook_secret(runtime: &Runtime, shared: &SyncShared) -> Result<()> {
    let uses_webhooks = shared.plans.values().any(|p| p.webhooks);
    let generate = if uses_webhooks && runtime.config.control.public_url.is_some() {
        secret::Generate::IfMissing
    } else {
        secret::Generate::Never
    };
    let config = runtime.config.clone();
    let resolved = tokio::task::spawn_blocking(move || secret::resolve(&config, generate))
        .await
        .map_err(|source| Error::Task {
            what: "resolving the webhook secret",
            source,
        })??;
    match &resolved {
        Some(found) => tracing::info!(
            source = found.source.as_str(),
            path = ?found.path,
            "webhook receiver: signatures are checked with the webhook secret"
        ),
        None if uses_webhooks => tracing::warn!(
            path = %secret::secret_path(&runtime.config).display(),
            "no webhook secret (control.webhook_secret is not set and the file does not exist): every webhook is refused with 401 until one exists; set control.public_url or run `syncd webhooks ensure`"
        ),
        None => tracing::debug!("no webhook secret: every webhook is refused with 401"),
    }
    runtime.metrics.set(
        "syncd_webhook_secret_present",
        &[],
        if resolved.is_some() { 1.0 } else { 0.0 },
    );
    if shared.webhook_secret.set(resolved).is_err() {
        tracing::debug!("the webhook secret was already resolved; keeping it");
    }
    Ok(())
}

/// Runs one subscription until `shutdown`.
pub async fn run_subscription(
    runtime: Arc<Runtime>,
    shared: Arc<SyncShared>,
    name: &str,
    shutdown: CancellationToken,
) -> Result<()> {
    let plan = shared.plan(name)?.clone();
    let client = runtime.clients.get(&plan.tenant)?.clone();
    // The supervisor (`crate::supervise`) registers `sync:<name>` with the watchdog.
    let loop_name = format!("sync:{name}");
    let engine = Engine {
        runtime: &runtime,
        shared: &shared,
        plan: &plan,
        client,
        shutdown: &shutdown,
        loop_name: &loop_name,
        server_ahead_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
        page_cap: std::sync::atomic::AtomicU32::new(0),
    };
    run_loop(&engine).await
}

fn backoff(failures: u32, poll: Duration) -> Duration {
    let exp = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16));
    exp.min(poll.max(Duration::from_secs(1)))
}

/// Why the poll interval is (back) at `poll_interval`: webhooks cannot be trusted to announce
/// every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unhealthy {
    /// The subscription does not use webhooks (off, or its entity has no events).
    Off,
    /// No webhook registration is known to be active (the daemon does not manage it without
    /// `control.public_url`, or its last check failed).
    NotRegistered,
    /// A batch of webhook refetches failed.
    RefetchFailed,
    /// A poll or reconcile found changes no webhook announced.
    Unannounced,
    /// A pass or reconcile failed.
    Failed,
    /// A full load (initial or resync) ran.
    Reload,
}

impl Unhealthy {
    /// The reason as logged.
    fn as_str(self) -> &'static str {
        match self {
            Unhealthy::Off => "webhooks are off",
            Unhealthy::NotRegistered => "no active webhook registration",
            Unhealthy::RefetchFailed => "a webhook refetch failed",
            Unhealthy::Unannounced => "changes no webhook announced",
            Unhealthy::Failed => "a pass failed",
            Unhealthy::Reload => "a full load ran",
        }
    }
}

/// The time between polls after a successful one: doubled (at most `max`) while webhooks are
/// healthy, else back to `base` (`poll_interval`). Only the next wait changes: what the poll
/// found is in the feed either way.
fn next_interval(
    current: Duration,
    base: Duration,
    max: Duration,
    health: std::result::Result<(), Unhealthy>,
) -> Duration {
    match health {
        Ok(()) => current.saturating_mul(2).min(max).max(base),
        Err(_) => base,
    }
}

fn since_text(text: &str) -> Option<Duration> {
    let at = text.parse::<superoffice::SoDateTime>().ok()?.to_utc();
    (chrono::Utc::now() - at).to_std().ok()
}

/// The subscription loop: resumes or starts passes, drains the refetch queue, reconciles when
/// due or requested and sleeps in between, until `shutdown`.
async fn run_loop(engine: &Engine<'_>) -> Result<()> {
    let runtime = engine.runtime;
    let wake = engine
        .shared
        .wakes
        .get(&engine.plan.name)
        .cloned()
        .unwrap_or_default();
    if engine.plan.webhooks {
        engine.shared.ensure_webhooks(runtime).await;
    }
    load_page_cap(engine).await?;
    let mut schedule = Schedule::new(&runtime.clock, engine.plan.poll_interval);
    schedule.publish_interval(engine).await?;
    loop {
        if engine.shutdown.is_cancelled() {
            return Ok(());
        }
        runtime.notifier.alive(engine.loop_name);
        let state = read_state(engine).await?;
        if state.resync_requested {
            start_resync(engine).await?;
            schedule.next_poll = runtime.clock.now();
            continue;
        }
        schedule.drain_queue(engine, &state).await?;
        schedule.check_registration(engine).await?;
        if schedule.pass_due(&state) && schedule.pass(engine, &state).await?.is_break() {
            return Ok(());
        }
        let since_reconcile = schedule.reconcile_if_due(engine).await?;
        let deadline = schedule.wake_at(engine, since_reconcile);
        if sleep_until(engine, &wake, deadline).await.is_break() {
            return Ok(());
        }
    }
}

/// The subscription's cursor state.
async fn read_state(engine: &Engine<'_>) -> Result<runs::SubState> {
    let name = engine.plan.name.clone();
    engine
        .runtime
        .store
        .read(move |conn| runs::state(conn, &name))
        .await
}

/// Starts from the server's `$top` cap a previous process remembered.
async fn load_page_cap(engine: &Engine<'_>) -> Result<()> {
    let state = read_state(engine).await?;
    if let Some(cap) = state.page_cap {
        engine
            .page_cap
            .store(cap, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// `syncd resync`: resets the cursor for a full reload and clears the degraded gauge.
async fn start_resync(engine: &Engine<'_>) -> Result<()> {
    let runtime = engine.runtime;
    let plan = engine.plan;
    let name = plan.name.clone();
    runtime
        .store
        .write(move |tx| runs::reset_for_resync(tx, &name))
        .await?;
    runtime.metrics.set(
        "syncd_subscription_degraded",
        &[("subscription", plan.name.as_str())],
        0.0,
    );
    tracing::info!(subscription = %plan.name, "resync requested: reloading");
    Ok(())
}

/// The kind of the pass to run next: the one in progress, else a poll once the initial load
/// completed, else a resync (after an earlier success) or the initial load.
fn pass_kind(state: &runs::SubState) -> PassKind {
    match (&state.resume, state.incremental) {
        (Some(resume), _) => resume.kind,
        (None, true) => PassKind::Poll,
        (None, false) if state.last_success.is_some() => PassKind::Resync,
        (None, false) => PassKind::Initial,
    }
}

/// When the subscription loop next polls and drains the refetch queue (instants of the
/// daemon's clock, so a test can skip the waits), and how many passes failed in a row.
struct Schedule<'c> {
    /// The daemon's clock.
    clock: &'c Clock,
    /// When the loop started (the reconcile interval counts from here before the first one).
    started: tokio::time::Instant,
    /// When the next pass is due.
    next_poll: tokio::time::Instant,
    /// When the refetch queue is looked at again (later after a failed batch).
    next_queue: tokio::time::Instant,
    /// Passes (or reconciles) failed in a row; decides the backoff.
    failures: u32,
    /// The time between polls in force: `poll_interval`, stretched while webhooks are healthy
    /// (see [`next_interval`]).
    interval: Duration,
    /// A batch of webhook refetches failed and the queue has not been drained since.
    refetch_failed: bool,
}

impl<'c> Schedule<'c> {
    /// Everything due now; polls `poll_interval` apart.
    fn new(clock: &'c Clock, poll_interval: Duration) -> Schedule<'c> {
        Schedule {
            clock,
            started: clock.now(),
            next_poll: clock.now(),
            next_queue: clock.now(),
            failures: 0,
            interval: poll_interval,
            refetch_failed: false,
        }
    }

    /// Shows the interval in force: the `syncd_poll_interval_seconds` gauge and the cursor
    /// `syncd status` reads.
    async fn publish_interval(&self, engine: &Engine<'_>) -> Result<()> {
        let runtime = engine.runtime;
        let name = engine.plan.name.clone();
        runtime.metrics.set(
            "syncd_poll_interval_seconds",
            &[("subscription", name.as_str())],
            self.interval.as_secs_f64(),
        );
        let interval = self.interval;
        runtime
            .store
            .write(move |tx| runs::set_poll_interval(tx, &name, interval))
            .await
    }

    /// Whether webhooks are keeping up, as far as the loop knows apart from what the last poll
    /// found: on for the subscription and its entity, registered, and every queued refetch
    /// done.
    fn webhooks_health(&self, engine: &Engine<'_>) -> std::result::Result<(), Unhealthy> {
        let plan = engine.plan;
        if !plan.webhooks || plan.kind.webhook_entity().is_none() {
            Err(Unhealthy::Off)
        } else if !engine.shared.webhooks_registered(&plan.tenant) {
            Err(Unhealthy::NotRegistered)
        } else if self.refetch_failed {
            Err(Unhealthy::RefetchFailed)
        } else {
            Ok(())
        }
    }

    /// Sets the interval in force (logged, shown); `why` says why it went back to
    /// `poll_interval`.
    async fn set_interval(
        &mut self,
        engine: &Engine<'_>,
        interval: Duration,
        why: Option<Unhealthy>,
    ) -> Result<()> {
        if interval == self.interval {
            return Ok(());
        }
        let plan = engine.plan;
        let shown = crate::config::format_duration(interval);
        if interval > self.interval {
            tracing::info!(subscription = %plan.name, interval = %shown, "poll interval stretched: webhooks are healthy");
        } else {
            let reason = why.map_or("", Unhealthy::as_str);
            tracing::info!(subscription = %plan.name, interval = %shown, reason, "poll interval back to poll_interval");
        }
        self.interval = interval;
        self.publish_interval(engine).await
    }

    /// Goes back to `poll_interval` at once (between passes): the next poll is due at most
    /// `poll_interval` from now.
    async fn shrink(&mut self, engine: &Engine<'_>, why: Unhealthy) -> Result<()> {
        let base = engine.plan.poll_interval;
        if self.interval > base {
            self.next_poll = self.next_poll.min(self.clock.now() + base);
        }
        self.set_interval(engine, base, Some(why)).await
    }

    /// Shrinks the interval when the webhook registration is no longer known to be active.
    async fn check_registration(&mut self, engine: &Engine<'_>) -> Result<()> {
        if self.interval > engine.plan.poll_interval
            && let Err(why) = self.webhooks_health(engine)
        {
            self.shrink(engine, why).await?;
        }
        Ok(())
    }

    /// Targeted refetches: queued by webhooks and by `syncd quarantine retry` (so also for
    /// subscriptions without webhooks). An event for a record the subscription does not hold
    /// makes the next pass due now; a failed batch is retried after a backoff.
    async fn drain_queue(&mut self, engine: &Engine<'_>, state: &runs::SubState) -> Result<()> {
        let runtime = engine.runtime;
        let plan = engine.plan;
        let clock = self.clock;
        if clock.now() >= self.next_queue {
            let name = plan.name.clone();
            let pending = runtime
                .store
                .read(move |conn| Ok(!webhooks::queued(conn, &name, 1)?.is_empty()))
                .await?;
            if pending {
                match step(engine, PassKind::Webhook, async {
                    let (outcome, unknown) = engine.drain_queue(state).await?;
                    Ok((outcome, false, unknown))
                })
                .await
                {
                    Some(unknown) => {
                        self.refetch_failed = false;
                        if unknown {
                            self.next_poll = clock.now();
                        }
                    }
                    None => {
                        self.refetch_failed = true;
                        self.next_queue = clock.now() + backoff(1, plan.poll_interval);
                        self.shrink(engine, Unhealthy::RefetchFailed).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A pass is due, or one a previous process started is to be finished.
    fn pass_due(&self, state: &runs::SubState) -> bool {
        self.clock.now() >= self.next_poll || state.resume.is_some()
    }

    /// Runs a pass and schedules the next one: after the interval in force (stretched by a
    /// healthy poll, see [`next_interval`]), or after a backoff when it failed. `Break` when
    /// shutdown stopped it.
    async fn pass(
        &mut self,
        engine: &Engine<'_>,
        state: &runs::SubState,
    ) -> Result<ControlFlow<()>> {
        let plan = engine.plan;
        let clock = self.clock;
        let kind = pass_kind(state);
        let ran = step(engine, kind, async {
            let outcome = engine.pass(state, kind).await?;
            Ok((outcome, false, outcome.applied.unannounced))
        })
        .await;
        if engine.shutdown.is_cancelled() {
            return Ok(ControlFlow::Break(()));
        }
        match ran {
            Some(unannounced) => {
                self.failures = 0;
                let health = match kind {
                    PassKind::Poll if unannounced > 0 => Err(Unhealthy::Unannounced),
                    PassKind::Poll => self.webhooks_health(engine),
                    _ => Err(Unhealthy::Reload),
                };
                let interval = next_interval(
                    self.interval,
                    plan.poll_interval,
                    plan.poll_interval_max,
                    health,
                );
                self.set_interval(engine, interval, health.err()).await?;
                self.next_poll = clock.now() + self.interval;
                after_pass(engine).await?;
            }
            None => {
                self.failures += 1;
                self.set_interval(engine, plan.poll_interval, Some(Unhealthy::Failed))
                    .await?;
                self.next_poll = clock.now() + backoff(self.failures, plan.poll_interval);
                continue_after_failure(engine, kind, self.failures).await;
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Reconcile: when due (not while degraded), or when an operator asked; only between
    /// passes and while nothing fails. Checks the webhook registration after a successful
    /// one. Returns how long ago the last reconcile completed (as read before this one).
    async fn reconcile_if_due(&mut self, engine: &Engine<'_>) -> Result<Duration> {
        let runtime = engine.runtime;
        let plan = engine.plan;
        let clock = self.clock;
        let state = read_state(engine).await?;
        let last_reconcile = state
            .last_reconcile
            .and_then(|at| (chrono::Utc::now() - at.at()).to_std().ok())
            .unwrap_or_else(|| clock.now().saturating_duration_since(self.started));
        let due = last_reconcile >= plan.reconcile_interval && state.degraded.is_none();
        if state.incremental
            && state.resume.is_none()
            && self.failures == 0
            && (state.reconcile_requested || due)
        {
            let force = state.reconcile_requested;
            let ran = step(engine, PassKind::Reconcile, async {
                let (outcome, tripped) = engine.reconcile(&state, force).await?;
                Ok((outcome, tripped, outcome.applied.unannounced))
            })
            .await;
            match ran {
                None => {
                    self.failures += 1;
                    self.set_interval(engine, plan.poll_interval, Some(Unhealthy::Failed))
                        .await?;
                    self.next_poll = clock.now() + backoff(self.failures, plan.poll_interval);
                }
                Some(unannounced) => {
                    if unannounced > 0 {
                        self.shrink(engine, Unhealthy::Unannounced).await?;
                    }
                    if plan.webhooks {
                        engine.shared.ensure_webhooks(runtime).await;
                    }
                }
            }
        }
        Ok(last_reconcile)
    }

    /// Until when the loop sleeps: the next poll or reconcile, at most [`FLAG_CHECK`] (the
    /// request flags are read on every round). `since_reconcile`: how long ago the last
    /// reconcile completed.
    fn wake_at(&self, engine: &Engine<'_>, since_reconcile: Duration) -> tokio::time::Instant {
        let clock = self.clock;
        let until_reconcile = engine
            .plan
            .reconcile_interval
            .saturating_sub(since_reconcile)
            .max(Duration::from_millis(10));
        self.next_poll
            .min(clock.now() + until_reconcile)
            .min(clock.now() + FLAG_CHECK)
    }
}

/// Sleeps until `deadline`, a webhook wake-up (then waits [`WEBHOOK_GATHER`] for more events)
/// or shutdown (`Break`); reports to the watchdog at least every heartbeat meanwhile.
async fn sleep_until(
    engine: &Engine<'_>,
    wake: &Notify,
    deadline: tokio::time::Instant,
) -> ControlFlow<()> {
    let runtime = engine.runtime;
    let clock = &runtime.clock;
    let shutdown = engine.shutdown;
    let heartbeat = runtime.notifier.heartbeat_interval();
    loop {
        let now = clock.now();
        if now >= deadline {
            break;
        }
        let step_until = heartbeat.map_or(deadline, |h| deadline.min(now + h));
        tokio::select! {
            _ = clock.sleep_until(step_until) => {
                runtime.notifier.alive(engine.loop_name);
            }
            _ = wake.notified() => {
                // Let a burst of events gather into one batch.
                tokio::select! {
                    _ = clock.sleep(WEBHOOK_GATHER) => {}
                    _ = shutdown.cancelled() => return ControlFlow::Break(()),
                }
                break;
            }
            _ = shutdown.cancelled() => return ControlFlow::Break(()),
        }
    }
    ControlFlow::Continue(())
}

async fn continue_after_failure(engine: &Engine<'_>, kind: PassKind, failures: u32) {
    if failures >= 3 {
        engine.runtime.notifier.status(&format!(
            "{}: {kind} failing ({failures} times in a row)",
            engine.plan.name
        ));
    }
}

/// After a successful pass: success time and lag.
async fn after_pass(engine: &Engine<'_>) -> Result<()> {
    let runtime = engine.runtime;
    let name = engine.plan.name.clone();
    let state = runtime
        .store
        .read(move |conn| runs::state(conn, &name))
        .await?;
    let labels = [("subscription", engine.plan.name.as_str())];
    runtime.metrics.set(
        "syncd_last_success_timestamp_seconds",
        &labels,
        chrono::Utc::now().timestamp() as f64,
    );
    if let Some(lag) = state.watermark.as_deref().and_then(since_text) {
        runtime
            .metrics
            .set("syncd_lag_seconds", &labels, lag.as_secs_f64());
    }
    Ok(())
}

/// Runs one unit of work as a `runs` row, with metrics and readiness; `None` on failure
/// (already logged and recorded).
async fn step<T, F>(engine: &Engine<'_>, kind: PassKind, work: F) -> Option<T>
where
    F: Future<Output = Result<(Outcome, bool, T)>>,
{
    let runtime = engine.runtime;
    let plan = engine.plan;
    // Webhook batches are frequent and small: they get a `runs` row only when they fail.
    let always = kind != PassKind::Webhook;
    let started_at = UtcTime::now();
    let run = if always {
        let name = plan.name.clone();
        match runtime
            .store
            .write(move |tx| runs::start_run(tx, &name, kind, started_at))
            .await
        {
            Ok(run) => Some(run),
            Err(error) => {
                tracing::error!(subscription = %plan.name, %error, "could not record a run");
                return None;
            }
        }
    } else {
        None
    };
    let result = work.await;
    let (status, fetched, requests, applied, error) = match &result {
        Ok((outcome, degraded, _)) => (
            if *degraded {
                RunStatus::Degraded
            } else {
                RunStatus::Ok
            },
            outcome.fetched,
            outcome.requests,
            outcome.applied,
            None,
        ),
        Err(_) if engine.shutdown.is_cancelled() => (
            RunStatus::Aborted,
            0,
            0,
            Default::default(),
            Some("shutdown".to_string()),
        ),
        Err(error) => (
            RunStatus::Failed,
            0,
            0,
            Default::default(),
            Some(error.to_string()),
        ),
    };
    let labels_status = [
        ("subscription", plan.name.as_str()),
        ("kind", kind.as_str()),
        ("status", status.as_str()),
    ];
    runtime.metrics.inc("syncd_runs_total", &labels_status, 1);
    if fetched > 0 {
        runtime.metrics.inc(
            "syncd_rows_read_total",
            &[
                ("subscription", plan.name.as_str()),
                ("kind", kind.as_str()),
            ],
            fetched,
        );
    }
    let end = RunEnd {
        status,
        fetched,
        requests,
        applied,
        error,
    };
    let name = plan.name.clone();
    let recorded = runtime
        .store
        .write(move |tx| {
            let run = match run {
                Some(run) => run,
                None if status == RunStatus::Failed => {
                    runs::start_run(tx, &name, kind, started_at)?
                }
                None => return Ok(()),
            };
            runs::finish_run(tx, run, &end, UtcTime::now())
        })
        .await;
    if let Err(error) = recorded {
        tracing::error!(subscription = %plan.name, %error, "could not record the end of a run");
    }
    match result {
        Ok((outcome, _, value)) => {
            if kind != PassKind::Webhook {
                runtime.health.set_run_error(&plan.name, None);
            }
            let a = outcome.applied;
            if a.inserts + a.updates + a.deletes > 0 || kind != PassKind::Poll {
                tracing::info!(
                    subscription = %plan.name,
                    kind = kind.as_str(),
                    fetched = outcome.fetched,
                    requests = outcome.requests,
                    inserts = a.inserts,
                    updates = a.updates,
                    deletes = a.deletes,
                    suppressed = a.suppressed,
                    "run finished"
                );
            }
            Some(value)
        }
        Err(error) => {
            if status == RunStatus::Failed {
                runtime.metrics.inc(
                    "syncd_errors_total",
                    &[("subscription", plan.name.as_str())],
                    1,
                );
                runtime
                    .health
                    .set_run_error(&plan.name, Some(error.to_string()));
                tracing::warn!(subscription = %plan.name, kind = kind.as_str(), %error, "run failed; retrying with backoff");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(300);
    const MAX: Duration = Duration::from_secs(7200);

    #[test]
    fn healthy_polls_double_the_interval_up_to_the_maximum() {
        let mut interval = BASE;
        let mut seen = Vec::new();
        for _ in 0..7 {
            interval = next_interval(interval, BASE, MAX, Ok(()));
            seen.push(interval.as_secs() / 60);
        }
        assert_eq!(seen, [10, 20, 40, 80, 120, 120, 120]);
    }

    #[test]
    fn anything_unhealthy_goes_back_to_the_poll_interval_at_once() {
        for why in [
            Unhealthy::Off,
            Unhealthy::NotRegistered,
            Unhealthy::RefetchFailed,
            Unhealthy::Unannounced,
            Unhealthy::Failed,
            Unhealthy::Reload,
        ] {
            assert_eq!(next_interval(MAX, BASE, MAX, Err(why)), BASE, "{why:?}");
            assert_eq!(next_interval(BASE, BASE, MAX, Err(why)), BASE, "{why:?}");
            assert!(!why.as_str().is_empty());
        }
    }

    #[test]
    fn a_maximum_equal_to_the_poll_interval_never_stretches() {
        assert_eq!(next_interval(BASE, BASE, BASE, Ok(())), BASE);
        // A maximum that is not a power-of-two multiple is reached exactly.
        let max = Duration::from_secs(1000);
        assert_eq!(
            next_interval(Duration::from_secs(600), BASE, max, Ok(())),
            max
        );
    }
}
