//! One subscription at work: the [`Engine`] of a subscription and the orchestration of one
//! pass (a keyset load or a windowed incremental pass over its scopes), with what every pass
//! shares: the page write it starts from, committing it (in page order, the next page built
//! meanwhile) and the change metrics. The rest lives beside it, one concern a module:
//!
//! - `scan`: reading the archive, page by page (keyset, resume, the `$top` cap probe, the
//!   checks that refuse answers of unexpected shape);
//! - `build`: turning rows into a page write (row shape, entity shape with settling,
//!   transform and quarantine);
//! - `refetch`: the targeted refetch of webhook-announced records;
//! - `reconcile`: the delete reconcile;
//! - `breaker`: confirming deletes and the mass-delete breaker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Map, Value};
use superoffice::{Client, SoDateTime};
use tokio_util::sync::CancellationToken;

use super::plan::{ParentRecord, Plan, Window};
use crate::config::Shape;
use crate::store::records::{self, Applied, CursorWrite, EchoMode, PageWrite};
use crate::store::runs::{Resume, SubState};
use crate::store::types::{PassKind, UtcTime};
use crate::{Error, Result, Runtime};

/// The earlier of two source timestamps (as written).
pub fn earlier(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => match (instant_of(&a), instant_of(&b)) {
            (Some(x), Some(y)) if y < x => Some(b),
            _ => Some(a),
        },
        (a, b) => a.or(b),
    }
}

/// What a pass or batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rows read from archives.
    pub fetched: u64,
    /// Changes and other effects.
    pub applied: Applied,
    /// Requests made (pages, GETs).
    pub requests: u64,
}

/// One subscription at work.
#[derive(Debug)]
pub struct Engine<'a> {
    /// Shared runtime.
    pub runtime: &'a Arc<Runtime>,
    /// The subscriptions' shared state (plans, wake-ups, the webhook secret).
    pub shared: &'a super::SyncShared,
    /// The compiled subscription.
    pub plan: &'a Plan,
    /// Its tenant's client.
    pub client: Client,
    /// Shutdown.
    pub shutdown: &'a CancellationToken,
    /// Loop name for the watchdog.
    pub loop_name: &'a str,
    /// The largest (source timestamp − our clock when we read it) seen, in milliseconds: the
    /// server's clock is at least our clock plus this (see `Engine::build`).
    pub server_ahead_ms: std::sync::atomic::AtomicI64,
    /// Rows the server answers per page at most, when it turned out to be fewer than
    /// `page_size` (0: not seen; see `Engine::keyset`).
    pub page_cap: std::sync::atomic::AtomicU32,
}

pub(super) fn instant_of(text: &str) -> Option<chrono::DateTime<Utc>> {
    text.parse::<SoDateTime>().ok().map(|d| d.to_utc())
}

/// The later of two source timestamps (as written).
pub fn later(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => match (instant_of(&a), instant_of(&b)) {
            (Some(x), Some(y)) if y > x => Some(b),
            _ => Some(a),
        },
        (a, b) => a.or(b),
    }
}

pub(super) fn shutting_down() -> Error {
    Error::Shutdown
}

impl Engine<'_> {
    pub(super) fn alive(&self) {
        self.runtime.notifier.alive(self.loop_name);
    }

    pub(super) fn cancelled(&self) -> Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(shutting_down());
        }
        Ok(())
    }

    pub(super) fn echo(&self) -> Option<EchoMode> {
        self.runtime
            .config
            .outbox
            .echo_suppression
            .then_some(match self.plan.shape {
                Shape::Row => EchoMode::Row,
                Shape::Entity => EchoMode::Entity,
            })
    }

    pub(super) fn page_write(&self, parent: Option<i64>) -> PageWrite {
        PageWrite {
            parent,
            echo: self.echo(),
            echo_peers: self.shared.peers(self.plan.kind),
            ..PageWrite::new(self.plan.name.clone(), self.plan.kind, UtcTime::now())
        }
    }

    /// Since when a webhook must have announced a change for it to count as announced.
    pub(super) fn unannounced_since(&self) -> Option<(&'static str, UtcTime)> {
        let entity = self.plan.kind.webhook_entity()?;
        if !self.plan.webhooks {
            return None;
        }
        let horizon = (self.plan.poll_interval * 3).max(Duration::from_secs(600));
        let since = Utc::now() - chrono::Duration::from_std(horizon).unwrap_or_default();
        Some((entity, UtcTime::from(since)))
    }

    pub(super) async fn commit(&self, write: PageWrite) -> Result<Applied> {
        let applied = self
            .runtime
            .store
            .write(move |tx| records::apply(tx, &write))
            .await?;
        if let Some(seq) = applied.last_seq {
            self.runtime.feed.committed(seq.get());
        }
        self.record_metrics(applied);
        Ok(applied)
    }

    pub(super) fn record_metrics(&self, applied: Applied) {
        let metrics = &self.runtime.metrics;
        let name = self.plan.name.as_str();
        for (op, n) in [
            ("insert", applied.inserts),
            ("update", applied.updates),
            ("delete", applied.deletes),
        ] {
            if n > 0 {
                metrics.inc(
                    "syncd_changes_total",
                    &[("subscription", name), ("op", op)],
                    n,
                );
            }
        }
        if applied.unannounced > 0 {
            metrics.inc(
                "syncd_unannounced_changes_total",
                &[("subscription", name)],
                applied.unannounced,
            );
        }
        if let Some(quarantined) = applied.quarantined {
            metrics.set(
                "syncd_quarantined_records",
                &[("subscription", name)],
                quarantined as f64,
            );
        }
        if applied.live_delta != 0 {
            let rows = metrics.get("syncd_rows", &[("subscription", name)]);
            metrics.set(
                "syncd_rows",
                &[("subscription", name)],
                rows + applied.live_delta as f64,
            );
        }
    }

    /// Starts committing a page on the store's blocking thread.
    pub(super) fn start_commit(
        &self,
        write: PageWrite,
    ) -> tokio::task::JoinHandle<Result<Applied>> {
        let store = self.runtime.store.clone();
        let feed = self.runtime.feed.clone();
        let name = self.plan.name.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let rows = write.upserts.len() + write.deletes.len();
            let applied = store.write(move |tx| records::apply(tx, &write)).await;
            // Wake feed readers as soon as the rows are visible, not when the pass settles.
            if let Ok(Applied {
                last_seq: Some(seq),
                ..
            }) = &applied
            {
                feed.committed(seq.get());
            }
            tracing::debug!(subscription = %name, rows, ms = began.elapsed().as_secs_f64() * 1e3, "page committed");
            applied
        })
    }

    /// Waits for a commit started by [`Engine::start_commit`] and counts it.
    pub(super) async fn settle_commit(
        &self,
        handle: tokio::task::JoinHandle<Result<Applied>>,
    ) -> Result<Applied> {
        let applied = handle.await.map_err(|source| Error::Task {
            what: "a page commit",
            source,
        })??;
        self.record_metrics(applied);
        Ok(applied)
    }

    /// A full (initial/resync) or incremental pass, resuming `state.resume` if a previous
    /// process stopped in the middle of one.
    pub async fn pass(&self, state: &SubState, kind: PassKind) -> Result<Outcome> {
        let mut resume = match &state.resume {
            Some(resume) => resume.clone(),
            None => Resume {
                kind,
                window: if state.incremental {
                    state.window_from.clone()
                } else {
                    None
                },
                parent: None,
                after: None,
                max: None,
                started: UtcTime::now(),
                floor: None,
            },
        };
        let window = resume.window.as_deref().and_then(Window::parse);
        let mut outcome = Outcome::default();
        let Some(parent_subscription) = &self.plan.parent else {
            self.scan(&mut resume, None, window, state, &mut outcome)
                .await?;
            return Ok(outcome);
        };
        loop {
            self.cancelled()?;
            let from = resume.parent.unwrap_or(i64::MIN);
            let parent_name = parent_subscription.clone();
            let batch = self
                .runtime
                .store
                .read(move |conn| records::parents(conn, &parent_name, from, 200))
                .await?;
            if batch.is_empty() {
                break;
            }
            for (id, json) in batch {
                let json: Map<String, Value> = match serde_json::from_str(&json) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                let parent = ParentRecord {
                    id,
                    json,
                    subscription: parent_subscription.clone(),
                };
                let name = self.plan.name.clone();
                let loaded = self
                    .runtime
                    .store
                    .read(move |conn| records::scope_loaded(conn, &name, id))
                    .await?;
                if resume.parent != Some(id) {
                    resume.parent = Some(id);
                    resume.after = None;
                }
                let scope_window = if loaded { window } else { None };
                self.scan(
                    &mut resume,
                    Some(&parent),
                    scope_window,
                    state,
                    &mut outcome,
                )
                .await?;
            }
        }
        // Every scope is done: close the pass.
        let mut write = self.page_write(None);
        write.cursor = Some(self.finish_cursor(state, &resume));
        outcome.applied += self.commit(write).await?;
        Ok(outcome)
    }

    pub(super) fn finish_cursor(&self, state: &SubState, resume: &Resume) -> CursorWrite {
        let watermark = later(state.watermark.clone(), resume.max.clone());
        let cap = earlier(watermark.clone(), resume.floor.clone())
            .as_deref()
            .and_then(instant_of)
            .map(|w| w.naive_utc());
        CursorWrite::Finish {
            watermark,
            window_from: self.plan.next_window(cap, resume.started()).to_text(),
        }
    }
}
