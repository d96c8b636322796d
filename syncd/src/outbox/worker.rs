//! The delivery worker: polls the `outbox` table, claims due tasks per tenant in FIFO order,
//! batches their key lookups, runs at most `outbox.concurrency` deliveries per tenant, records
//! every outcome, keeps the `syncd_tasks` gauge fresh and reports to the systemd watchdog.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use superoffice::entity::EntityKind;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::OutboxShared;
use super::deliver::{Delivery, Outcome, Prefetch, Slot};
use super::ledger::{self, Finish};
use super::task::{Task, TaskId, TaskState};
use crate::store::commit::Committer;
use crate::store::{outbox_rows, tasks};
use crate::{Config, Result, Runtime};

/// How often the worker looks for work when nothing wakes it.
const IDLE: Duration = Duration::from_millis(100);
/// How often the `outbox` table is polled.
const OUTBOX_POLL: Duration = Duration::from_millis(200);
/// How often the `syncd_tasks` gauge is refreshed.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Rows moved from the `outbox` table per transaction.
const OUTBOX_BATCH: usize = 500;
/// The longest a batch key lookup may take before its tasks look their keys up one by one.
const PREFETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The tenant publishes go to.
pub(crate) fn publish_tenant(config: &Config) -> Option<String> {
    config
        .outbox
        .tenant
        .clone()
        .or_else(|| config.tenants.first().map(|t| t.name.clone()))
}

/// Sets `syncd_tasks{state}` from the ledger.
pub(crate) async fn refresh_metrics(runtime: &Runtime) {
    match runtime.store.read(tasks::counts).await {
        Ok(counts) => {
            for (state, n) in counts {
                runtime
                    .metrics
                    .set("syncd_tasks", &[("state", state.as_str())], n as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "outbox: counting tasks failed"),
    }
}

type Claimed = Vec<(Task, Prefetch)>;

pub(crate) struct Worker {
    runtime: Arc<Runtime>,
    shared: Arc<OutboxShared>,
    shutdown: CancellationToken,
    config: Arc<Config>,
    /// Claimed tasks waiting for a delivery slot of their tenant.
    queue: VecDeque<(Task, Prefetch)>,
    /// Running deliveries per tenant.
    running: HashMap<String, usize>,
    deliveries: JoinSet<(Task, Outcome)>,
    /// The slot each running delivery holds (or held, if it gave it back early).
    delivery_slot: HashMap<tokio::task::Id, Arc<Slot>>,
    /// Tenants whose deliveries gave their slot back before ending (a create's POST answered).
    slots_freed: tokio::sync::mpsc::UnboundedReceiver<String>,
    slot_sender: tokio::sync::mpsc::UnboundedSender<String>,
    /// Outcomes being recorded, and keys of committed creates being stored: a delivery slot
    /// is free again once its entity write is done; its task stays `in_flight`, blocking its
    /// lane, until the outcome is committed.
    recording: JoinSet<()>,
    committer: Committer,
    /// Claims (with their key lookups) run beside the deliveries, one per tenant at a time.
    refills: JoinSet<(String, Result<Claimed>)>,
    refilling: HashSet<String>,
    /// A tenant whose last claim found nothing is not asked again before this (unless woken).
    quiet_until: HashMap<String, Instant>,
}

impl Worker {
    pub(crate) fn new(
        runtime: Arc<Runtime>,
        shared: Arc<OutboxShared>,
        shutdown: CancellationToken,
    ) -> Worker {
        let config = Arc::new(runtime.config.clone());
        let (slot_sender, slots_freed) = tokio::sync::mpsc::unbounded_channel();
        Worker {
            committer: Committer::start(runtime.store.clone()),
            runtime,
            shared,
            shutdown,
            config,
            queue: VecDeque::new(),
            running: HashMap::new(),
            deliveries: JoinSet::new(),
            delivery_slot: HashMap::new(),
            slots_freed,
            slot_sender,
            recording: JoinSet::new(),
            refills: JoinSet::new(),
            refilling: HashSet::new(),
            quiet_until: HashMap::new(),
        }
    }

    fn concurrency(&self) -> usize {
        self.config.outbox.concurrency.max(1)
    }

    pub(crate) async fn run(mut self) -> Result<()> {
        let mut last_outbox = Instant::now() - OUTBOX_POLL;
        let mut last_metrics = Instant::now();
        loop {
            self.runtime.notifier.alive("outbox");
            if self.shutdown.is_cancelled() {
                break;
            }
            if last_outbox.elapsed() >= OUTBOX_POLL {
                last_outbox = Instant::now();
                match self.poll_outbox().await {
                    Ok(true) => self.quiet_until.clear(),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%error, "outbox: moving rows of the outbox table failed")
                    }
                }
            }
            if last_metrics.elapsed() >= METRICS_EVERY {
                last_metrics = Instant::now();
                refresh_metrics(&self.runtime).await;
            }
            self.refill();
            self.start();
            tokio::select! {
                Some(joined) = self.deliveries.join_next_with_id(), if !self.deliveries.is_empty() => {
                    self.joined(joined);
                }
                Some(tenant) = self.slots_freed.recv() => self.slot_freed(&tenant),
                Some(recorded) = self.recording.join_next(), if !self.recording.is_empty() => {
                    if let Err(error) = recorded {
                        tracing::error!(%error, "outbox: recording an outcome panicked");
                    }
                }
                Some(refilled) = self.refills.join_next(), if !self.refills.is_empty() => {
                    self.refilled(refilled);
                }
                _ = self.shared.notify.notified() => self.quiet_until.clear(),
                _ = self.runtime.clock.sleep(IDLE) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        self.stop().await;
        Ok(())
    }

    fn joined(
        &mut self,
        joined: std::result::Result<(tokio::task::Id, (Task, Outcome)), tokio::task::JoinError>,
    ) {
        let id = match joined {
            Ok((id, (task, outcome))) => {
                let runtime = self.runtime.clone();
                let shared = self.shared.clone();
                let committer = self.committer.clone();
                let shutdown = self.shutdown.clone();
                self.recording.spawn(async move {
                    let outcome = match outcome {
                        Outcome::Posted { record, answer } => {
                            Delivery {
                                runtime: &runtime,
                                shared: &shared,
                                shutdown: &shutdown,
                                committer: &committer,
                                slot: None,
                            }
                            .store_key(&task, record, *answer)
                            .await
                        }
                        other => other,
                    };
                    record(&runtime, &committer, task, outcome).await
                });
                id
            }
            Err(error) => {
                tracing::error!(%error, "outbox: a delivery panicked; its task stays in flight until restart");
                error.id()
            }
        };
        if let Some(slot) = self.delivery_slot.remove(&id) {
            if slot.take_back() {
                self.slot_freed(slot.tenant());
            }
            // A finished task may unblock the next one of its lane.
            self.quiet_until.remove(slot.tenant());
        }
    }

    /// A delivery of `tenant` gave its slot back.
    fn slot_freed(&mut self, tenant: &str) {
        if let Some(n) = self.running.get_mut(tenant) {
            *n = n.saturating_sub(1);
        }
    }

    fn refilled(
        &mut self,
        refilled: std::result::Result<(String, Result<Claimed>), tokio::task::JoinError>,
    ) {
        match refilled {
            Ok((tenant, Ok(claimed))) => {
                self.refilling.remove(&tenant);
                if claimed.is_empty() {
                    self.quiet_until.insert(tenant, Instant::now() + IDLE);
                }
                self.queue.extend(claimed);
            }
            Ok((tenant, Err(error))) => {
                tracing::error!(%error, "outbox: claiming tasks failed");
                self.refilling.remove(&tenant);
                self.quiet_until.insert(tenant, Instant::now() + IDLE);
            }
            Err(error) => {
                // Tasks it claimed stay in flight until the next start resolves them.
                tracing::error!(%error, "outbox: a claim panicked");
                self.refilling.clear();
            }
        }
    }

    /// Moves rows of the `outbox` table into the ledger; true if any moved.
    async fn poll_outbox(&self) -> Result<bool> {
        if !self.runtime.store.read(outbox_rows::has_rows).await? {
            return Ok(false);
        }
        let moved =
            ledger::poll_outbox(&self.runtime.store, &self.config, OUTBOX_BATCH, Utc::now())
                .await?;
        if moved.rejected > 0 {
            tracing::warn!(
                rejected = moved.rejected,
                "outbox: rows of the outbox table failed validation (dead tasks)"
            );
        }
        Ok(moved.queued + moved.replays + moved.rejected > 0)
    }

    /// Starts a claim for every tenant whose queue runs low, beside the running deliveries.
    fn refill(&mut self) {
        let limit = self.concurrency();
        let now = Instant::now();
        for tenant in self.config.tenants.iter().map(|t| t.name.clone()) {
            if self.refilling.contains(&tenant)
                || self.quiet_until.get(&tenant).is_some_and(|t| *t > now)
            {
                continue;
            }
            let queued = self
                .queue
                .iter()
                .filter(|(t, _)| t.tenant == tenant)
                .count();
            let running = self.running.get(&tenant).copied().unwrap_or(0);
            // Tasks past their slot (committing their id, storing their key, recording their
            // outcome) still count against the claim, so claimed work stays bounded.
            let settling = (self.deliveries.len() + self.recording.len()).saturating_sub(running);
            // Refill when fewer than two slots' worth wait, up to six slots' worth, so one key
            // lookup covers many creates and the slots never run dry while it runs.
            let room = (limit * 6).saturating_sub(queued + running + settling);
            if queued >= limit * 2 || room == 0 {
                continue;
            }
            self.refilling.insert(tenant.clone());
            let (runtime, shared) = (self.runtime.clone(), self.shared.clone());
            self.refills.spawn(async move {
                let claimed = claim(&runtime, &shared, &tenant, room).await;
                (tenant, claimed)
            });
        }
    }

    /// Starts queued deliveries while their tenant has room.
    fn start(&mut self) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let limit = self.concurrency();
        let mut rest = VecDeque::with_capacity(self.queue.len());
        while let Some((task, prefetch)) = self.queue.pop_front() {
            let running = self.running.entry(task.tenant.clone()).or_insert(0);
            if *running >= limit {
                rest.push_back((task, prefetch));
                continue;
            }
            *running += 1;
            let runtime = self.runtime.clone();
            let shared = self.shared.clone();
            let shutdown = self.shutdown.clone();
            let committer = self.committer.clone();
            let slot = Arc::new(Slot::new(task.tenant.clone(), self.slot_sender.clone()));
            let held = slot.clone();
            let handle = self.deliveries.spawn(async move {
                let outcome = Delivery {
                    runtime: &runtime,
                    shared: &shared,
                    shutdown: &shutdown,
                    committer: &committer,
                    slot: Some(&held),
                }
                .attempt(&task, prefetch)
                .await;
                (task, outcome)
            });
            self.delivery_slot.insert(handle.id(), slot);
        }
        self.queue = rest;
    }

    /// Shutdown: give back what has not started, let running deliveries commit.
    async fn stop(&mut self) {
        while let Some(refilled) = self.refills.join_next().await {
            if let Ok((_, Ok(claimed))) = refilled {
                self.queue.extend(claimed);
            }
        }
        let ids: Vec<TaskId> = self.queue.drain(..).map(|(t, _)| t.id).collect();
        if !ids.is_empty()
            && let Err(error) = self
                .runtime
                .store
                .write(move |tx| tasks::release(tx, &ids, Utc::now()))
                .await
        {
            tracing::error!(%error, "outbox: releasing claimed tasks failed (they are resolved on the next start)");
        }
        let deadline = tokio::time::Instant::now() + super::SHUTDOWN_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.deliveries.join_next_with_id()).await {
                Ok(Some(joined)) => self.joined(joined),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        "outbox: deliveries still running at shutdown stay in flight; the next start resolves them"
                    );
                    self.deliveries.abort_all();
                    break;
                }
            }
        }
        loop {
            match tokio::time::timeout_at(deadline, self.recording.join_next()).await {
                Ok(Some(Err(error))) => {
                    tracing::error!(%error, "outbox: recording an outcome failed during shutdown")
                }
                Ok(Some(Ok(()))) => {}
                Ok(None) => break,
                Err(_) => {
                    // Storing keys of committed creates: the next start completes them.
                    self.recording.abort_all();
                    break;
                }
            }
        }
        refresh_metrics(&self.runtime).await;
    }
}

/// Claims up to `room` due tasks of `tenant` and looks their keys up.
async fn claim(
    runtime: &Arc<Runtime>,
    shared: &OutboxShared,
    tenant: &str,
    room: usize,
) -> Result<Claimed> {
    let now = Utc::now();
    let due = runtime
        .store
        .read(move |conn| tasks::any_due(conn, now))
        .await?;
    if !due {
        return Ok(Vec::new());
    }
    let name = tenant.to_string();
    let claimed = runtime
        .store
        .write(move |tx| tasks::claim(tx, &name, room, Utc::now()))
        .await?;
    // A slow lookup only costs the shortcut: every task then checks its own key.
    let prefetched = tokio::time::timeout(
        PREFETCH_TIMEOUT,
        prefetch(runtime, shared, tenant, &claimed),
    )
    .await
    .unwrap_or_default();
    Ok(claimed
        .into_iter()
        .map(|task| {
            let prefetch = prefetched
                .get(&task.id)
                .copied()
                .unwrap_or(Prefetch::Unknown);
            (task, prefetch)
        })
        .collect())
}

/// One `ForeignKeys` archive lookup per entity for the fresh creates among `tasks`.
async fn prefetch(
    runtime: &Runtime,
    shared: &OutboxShared,
    tenant: &str,
    tasks: &[Task],
) -> BTreeMap<TaskId, Prefetch> {
    let mut out = BTreeMap::new();
    let Ok(client) = runtime.clients.get(tenant) else {
        return out;
    };
    let mut by_entity: BTreeMap<EntityKind, Vec<&Task>> = BTreeMap::new();
    for task in tasks {
        let fresh = !task.maybe_sent && task.result_id.is_none();
        if fresh
            && task.action().is_ok_and(|a| a.creates())
            && let Ok(kind) = task.entity()
        {
            by_entity.entry(kind).or_default().push(task);
        }
    }
    for (kind, tasks) in by_entity {
        let values: Vec<String> = tasks.iter().map(|t| t.record_key()).collect();
        match shared.keys.lookup_many(client, kind, &values).await {
            Ok(found) => {
                for task in tasks {
                    let prefetch = match found.get(&task.record_key()) {
                        Some(id) => Prefetch::Found(*id),
                        None => Prefetch::Absent,
                    };
                    out.insert(task.id, prefetch);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "outbox: batch key lookup failed; looking up one by one")
            }
        }
    }
    out
}

/// Records the outcome of an attempt (and counts it).
async fn record(runtime: &Arc<Runtime>, committer: &Committer, task: Task, outcome: Outcome) {
    let id = task.id;
    let recorded = match &outcome {
        Outcome::Posted { .. } => return,
        Outcome::Release => {
            committer
                .write(move |tx| tasks::release(tx, &[id], Utc::now()))
                .await
        }
        Outcome::Finish(finish) => {
            let finish = (**finish).clone();
            committer
                .write(move |tx| tasks::finish(tx, id, &finish, Utc::now()))
                .await
        }
    };
    if let Err(error) = recorded {
        tracing::error!(task = id.0, %error, "outbox: recording the outcome failed; the task stays in flight until restart");
        return;
    }
    let Outcome::Finish(finish) = &outcome else {
        return;
    };
    let outcome_label = match finish.state() {
        TaskState::Pending => "retry",
        other => other.as_str(),
    };
    runtime.metrics.inc(
        "syncd_publish_total",
        &[
            ("entity", &task.entity.to_string()),
            ("action", &task.action.to_string()),
            ("outcome", outcome_label),
        ],
        1,
    );
    match &**finish {
        Finish::Done { .. } => tracing::debug!(task = id.0, key = %task.key, "outbox: delivered"),
        Finish::Retry { error, at, .. } => {
            tracing::info!(task = id.0, %error, retry_at = %at, "outbox: attempt failed; retrying")
        }
        Finish::Dead { error, .. } => tracing::error!(task = id.0, %error, "outbox: task is dead"),
        Finish::Failed { error } => tracing::error!(task = id.0, %error, "outbox: task failed"),
        Finish::Conflict { error, .. } => tracing::warn!(task = id.0, %error, "outbox: conflict"),
    }
}
