//! The delivery worker: polls the `outbox` table, claims due tasks per tenant in FIFO order,
//! batches their key lookups, runs at most `outbox.concurrency` deliveries per tenant, records
//! every outcome, keeps the `syncd_tasks` gauge fresh and reports to the systemd watchdog.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::deliver::{Delivery, Outcome, Prefetch};
use super::ledger::{self, Finish};
use super::task::{Task, TaskState, ts};
use crate::{Config, Result, Services};

/// How often the worker looks for work when nothing wakes it.
const IDLE: Duration = Duration::from_millis(100);
/// How often the `outbox` table is polled.
const OUTBOX_POLL: Duration = Duration::from_millis(200);
/// How often the `syncd_tasks` gauge is refreshed.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Rows moved from the `outbox` table per transaction.
const OUTBOX_BATCH: usize = 500;

/// The tenant publishes go to.
pub(crate) fn publish_tenant(config: &Config) -> Option<String> {
    config
        .outbox
        .tenant
        .clone()
        .or_else(|| config.tenants.first().map(|t| t.name.clone()))
}

/// Sets `syncd_tasks{state}` from the ledger.
pub(crate) async fn refresh_metrics(services: &Services) {
    match services.store.read(ledger::counts).await {
        Ok(counts) => {
            for (state, n) in counts {
                services
                    .metrics
                    .set("syncd_tasks", &[("state", state.as_str())], n as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "outbox: counting tasks failed"),
    }
}

pub(crate) struct Worker {
    services: Arc<Services>,
    shutdown: CancellationToken,
    config: Arc<Config>,
    queue: VecDeque<(Task, Prefetch)>,
    running: HashMap<String, usize>,
    deliveries: JoinSet<String>,
}

impl Worker {
    pub(crate) fn new(services: Arc<Services>, shutdown: CancellationToken) -> Worker {
        let config = Arc::new(services.config.clone());
        Worker {
            services,
            shutdown,
            config,
            queue: VecDeque::new(),
            running: HashMap::new(),
            deliveries: JoinSet::new(),
        }
    }

    fn concurrency(&self) -> usize {
        self.config.outbox.concurrency.max(1)
    }

    pub(crate) async fn run(mut self) -> Result<()> {
        let mut last_outbox = Instant::now() - OUTBOX_POLL;
        let mut last_metrics = Instant::now();
        let mut dirty = true;
        loop {
            self.services.notifier.alive("outbox");
            if self.shutdown.is_cancelled() {
                break;
            }
            if last_outbox.elapsed() >= OUTBOX_POLL {
                last_outbox = Instant::now();
                match self.poll_outbox().await {
                    Ok(true) => dirty = true,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::error!(%error, "outbox: moving rows of the outbox table failed")
                    }
                }
            }
            if last_metrics.elapsed() >= METRICS_EVERY {
                last_metrics = Instant::now();
                refresh_metrics(&self.services).await;
            }
            if dirty || self.queue.len() < self.concurrency() {
                match self.fill().await {
                    Ok(claimed) => dirty = claimed > 0,
                    Err(error) => {
                        tracing::error!(%error, "outbox: claiming tasks failed");
                        dirty = false;
                    }
                }
            }
            self.start();
            tokio::select! {
                Some(joined) = self.deliveries.join_next(), if !self.deliveries.is_empty() => {
                    self.joined(joined);
                    dirty = true;
                }
                _ = self.services.outbox.notify.notified() => dirty = true,
                _ = tokio::time::sleep(IDLE) => {}
                _ = self.shutdown.cancelled() => {}
            }
        }
        self.stop().await;
        Ok(())
    }

    fn joined(&mut self, joined: std::result::Result<String, tokio::task::JoinError>) {
        match joined {
            Ok(tenant) => {
                if let Some(n) = self.running.get_mut(&tenant) {
                    *n = n.saturating_sub(1);
                }
            }
            Err(error) => {
                tracing::error!(%error, "outbox: a delivery panicked; its task stays in flight until restart");
                // Which tenant it belonged to is lost with the panic: recount conservatively.
                let total: usize = self.running.values().sum();
                if total > self.deliveries.len() {
                    for n in self.running.values_mut() {
                        if *n > 0 {
                            *n -= 1;
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Moves rows of the `outbox` table into the ledger; true if any moved.
    async fn poll_outbox(&self) -> Result<bool> {
        if !self.services.store.read(ledger::outbox_has_rows).await? {
            return Ok(false);
        }
        let config = self.config.clone();
        let moved = self
            .services
            .store
            .write(move |tx| ledger::poll_outbox(tx, &config, OUTBOX_BATCH, Utc::now()))
            .await?;
        if moved.rejected > 0 {
            tracing::warn!(
                rejected = moved.rejected,
                "outbox: rows of the outbox table failed validation (dead tasks)"
            );
        }
        Ok(moved.queued + moved.replays + moved.rejected > 0)
    }

    /// Claims tasks while the local queue is short; returns how many.
    async fn fill(&mut self) -> Result<usize> {
        let now = ts(Utc::now());
        let due = self
            .services
            .store
            .read(move |conn| {
                conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM tasks WHERE state = 'pending' AND next_attempt_at <= ?1)",
                    [now],
                    |r| r.get::<_, bool>(0),
                )
                .map_err(crate::store::sql)
            })
            .await?;
        if !due {
            return Ok(0);
        }
        let mut total = 0;
        let tenants: Vec<String> = self.config.tenants.iter().map(|t| t.name.clone()).collect();
        for tenant in tenants {
            let queued = self
                .queue
                .iter()
                .filter(|(t, _)| t.tenant == tenant)
                .count();
            let running = self.running.get(&tenant).copied().unwrap_or(0);
            let room = (self.concurrency() * 4).saturating_sub(queued + running);
            if room == 0 || queued >= self.concurrency() * 2 {
                continue;
            }
            let name = tenant.clone();
            let claimed = self
                .services
                .store
                .write(move |tx| ledger::claim(tx, &name, room, Utc::now()))
                .await?;
            total += claimed.len();
            let prefetched = self.prefetch(&tenant, &claimed).await;
            for task in claimed {
                let prefetch = prefetched
                    .get(&task.id)
                    .copied()
                    .unwrap_or(Prefetch::Unknown);
                self.queue.push_back((task, prefetch));
            }
        }
        Ok(total)
    }

    /// One `ForeignKeys` archive lookup per entity for the fresh creates among `tasks`.
    async fn prefetch(&self, tenant: &str, tasks: &[Task]) -> BTreeMap<i64, Prefetch> {
        let mut out = BTreeMap::new();
        let Ok(client) = self.services.clients.get(tenant) else {
            return out;
        };
        let mut by_entity: BTreeMap<String, Vec<&Task>> = BTreeMap::new();
        for task in tasks {
            let fresh = !task.maybe_sent && task.result_id.is_none();
            if fresh && task.action().is_ok_and(|a| a.creates()) {
                by_entity.entry(task.entity.clone()).or_default().push(task);
            }
        }
        for (entity, tasks) in by_entity {
            let Ok(kind) = entity.parse() else { continue };
            let values: Vec<String> = tasks.iter().map(|t| t.record_key()).collect();
            match self
                .services
                .outbox
                .keys
                .lookup_many(client, kind, &values)
                .await
            {
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

    /// Starts queued deliveries while their tenant has room.
    fn start(&mut self) {
        let limit = self.concurrency();
        let mut rest = VecDeque::with_capacity(self.queue.len());
        while let Some((task, prefetch)) = self.queue.pop_front() {
            let running = self.running.entry(task.tenant.clone()).or_insert(0);
            if *running >= limit || self.shutdown.is_cancelled() {
                rest.push_back((task, prefetch));
                continue;
            }
            *running += 1;
            let services = self.services.clone();
            let shutdown = self.shutdown.clone();
            self.deliveries.spawn(async move {
                let tenant = task.tenant.clone();
                deliver_one(&services, &shutdown, task, prefetch).await;
                tenant
            });
        }
        self.queue = rest;
    }

    /// Shutdown: give back what has not started, let running deliveries commit.
    async fn stop(&mut self) {
        let ids: Vec<i64> = self.queue.drain(..).map(|(t, _)| t.id).collect();
        if !ids.is_empty()
            && let Err(error) = self
                .services
                .store
                .write(move |tx| ledger::release(tx, &ids, Utc::now()))
                .await
        {
            tracing::error!(%error, "outbox: releasing claimed tasks failed (they are resolved on the next start)");
        }
        let waiting = async {
            while let Some(joined) = self.deliveries.join_next().await {
                if let Err(error) = joined {
                    tracing::error!(%error, "outbox: a delivery failed during shutdown");
                }
            }
        };
        if tokio::time::timeout(super::SHUTDOWN_WAIT, waiting)
            .await
            .is_err()
        {
            tracing::warn!(
                "outbox: deliveries still running at shutdown stay in flight; the next start resolves them"
            );
            self.deliveries.abort_all();
        }
        refresh_metrics(&self.services).await;
    }
}

/// One attempt of one task, recorded.
async fn deliver_one(
    services: &Arc<Services>,
    shutdown: &CancellationToken,
    task: Task,
    prefetch: Prefetch,
) {
    let delivery = Delivery {
        services,
        shared: &services.outbox,
        shutdown,
    };
    let outcome = delivery.attempt(&task, prefetch).await;
    let id = task.id;
    let recorded = match &outcome {
        Outcome::Release => {
            services
                .store
                .write(move |tx| ledger::release(tx, &[id], Utc::now()))
                .await
        }
        Outcome::Finish(finish) => {
            let finish = (**finish).clone();
            services
                .store
                .write(move |tx| ledger::finish(tx, id, &finish, Utc::now()))
                .await
        }
    };
    if let Err(error) = recorded {
        tracing::error!(task = id, %error, "outbox: recording the outcome failed; the task stays in flight until restart");
        return;
    }
    if let Outcome::Finish(finish) = &outcome {
        let outcome_label = match finish.state() {
            TaskState::Pending => "retry",
            other => other.as_str(),
        };
        services.metrics.inc(
            "syncd_publish_total",
            &[
                ("entity", &task.entity),
                ("action", &task.action),
                ("outcome", outcome_label),
            ],
            1,
        );
        match &**finish {
            Finish::Done { .. } => {
                tracing::debug!(task = id, key = %task.key, "outbox: delivered")
            }
            Finish::Retry { error, at, .. } => {
                tracing::info!(task = id, %error, retry_at = %at, "outbox: attempt failed; retrying")
            }
            Finish::Dead { error, .. } => {
                tracing::error!(task = id, %error, "outbox: task is dead")
            }
            Finish::Failed { error } => {
                tracing::error!(task = id, %error, "outbox: task failed")
            }
            Finish::Conflict { error, .. } => {
                tracing::warn!(task = id, %error, "outbox: conflict")
            }
        }
    }
}
