//! The retention loop: deletes `webhook_events` and `runs` rows older than `[retention]` says
//! (defaults 7 days and 30 days), and with `[retention] changes` the change rows older than
//! that which every `[[sink]]` has acknowledged (never the newest row, so seqs are never
//! handed out twice), at start-up and then every hour.
//!
//! Deletes run in batches of [`BATCH`] rows, one short write transaction each, so the daemon's
//! writers never wait long (the statements are [`crate::store::retention`]). What was deleted
//! is logged at debug and counted in `syncd_pruned_rows_total{table}`; a failure is logged at
//! warn with the error, counted in `syncd_retention_errors_total`, and retried after
//! [`RETRY`]. The loop only ends with the daemon.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::store::retention;
use crate::{Error, Result, Runtime};

/// The loop's name (supervisor, watchdog, `syncd status`).
pub const LOOP: &str = "retention";

/// Time between prunes.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Time before a failed prune is tried again.
pub const RETRY: Duration = Duration::from_secs(300);

/// Rows deleted per transaction.
pub const BATCH: usize = 5000;

/// Rows one prune deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// `webhook_events` rows.
    pub webhook_events: usize,
    /// `runs` rows.
    pub runs: usize,
    /// `changes` rows (only with `[retention] changes`).
    pub changes: usize,
}

/// The instant `keep` (the value of `[retention]` `key`) before now.
fn cutoff(key: &str, keep: Duration) -> Result<chrono::DateTime<Utc>> {
    let keep = chrono::TimeDelta::from_std(keep)
        .map_err(|e| Error::config_key(key, format!("{keep:?}: {e}")))?;
    Utc::now()
        .checked_sub_signed(keep)
        .ok_or_else(|| Error::config_key(key, format!("{keep}: before the earliest date")))
}

/// Deletes what `[retention]` no longer keeps, [`BATCH`] rows per transaction.
pub async fn prune_once(runtime: &Runtime) -> Result<Pruned> {
    let events_before = cutoff(
        "retention.webhook_events",
        runtime.config.retention.webhook_events,
    )?;
    let runs_before = cutoff("retention.runs", runtime.config.retention.runs)?;
    let mut pruned = Pruned::default();
    loop {
        let n = runtime
            .store
            .write(move |tx| retention::prune_webhook_events(tx, events_before, BATCH))
            .await?;
        pruned.webhook_events += n;
        if n < BATCH {
            break;
        }
    }
    loop {
        let n = runtime
            .store
            .write(move |tx| retention::prune_runs(tx, runs_before, BATCH))
            .await?;
        pruned.runs += n;
        if n < BATCH {
            break;
        }
    }
    if let Some(keep) = runtime.config.retention.changes {
        let before = cutoff("retention.changes", keep)?;
        let sinks: Vec<String> = runtime
            .config
            .sinks
            .iter()
            .map(|s| s.name.clone())
            .collect();
        loop {
            let sinks = sinks.clone();
            let n = runtime
                .store
                .write(move |tx| {
                    let acked = retention::min_acked(tx, &sinks)?;
                    retention::prune_changes(tx, before, acked, BATCH)
                })
                .await?;
            pruned.changes += n;
            if n < BATCH {
                break;
            }
        }
    }
    Ok(pruned)
}

/// Prunes at start and every [`EVERY`] until `shutdown`. Never returns an error: failures are
/// logged, counted and retried. While it waits it reports to the watchdog every heartbeat, so
/// only a prune that hangs withholds the ping.
pub async fn run(runtime: Arc<Runtime>, shutdown: CancellationToken) -> Result<()> {
    loop {
        let wait = match prune_once(&runtime).await {
            Ok(pruned) => {
                for (table, n) in [
                    ("webhook_events", pruned.webhook_events),
                    ("runs", pruned.runs),
                    ("changes", pruned.changes),
                ] {
                    runtime
                        .metrics
                        .inc("syncd_pruned_rows_total", &[("table", table)], n as u64);
                }
                tracing::debug!(
                    webhook_events = pruned.webhook_events,
                    runs = pruned.runs,
                    changes = pruned.changes,
                    "retention: deleted old rows"
                );
                EVERY
            }
            Err(error) => {
                runtime.metrics.inc("syncd_retention_errors_total", &[], 1);
                tracing::warn!(%error, retry_in = ?RETRY, "retention: deleting old webhook events and runs failed");
                RETRY
            }
        };
        runtime.notifier.alive(LOOP);
        let clock = &runtime.clock;
        let until = clock.now() + wait;
        let beat = runtime.notifier.heartbeat_interval().unwrap_or(wait);
        while clock.now() < until {
            tokio::select! {
                _ = clock.sleep_until(until.min(clock.now() + beat)) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            runtime.notifier.alive(LOOP);
        }
    }
}
