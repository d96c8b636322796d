//! The targeted refetch of webhook-announced records: the refetch queue, a batch at a time,
//! re-read from the archive (and as entities), with a confirmed delete for each announced
//! record the archive no longer lists.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Utc;
use superoffice::odata::{Filter, Query, Row};
use superoffice::paginate::Source;

use super::build::{Built, SETTLE};
use super::engine::{Engine, Outcome};
use crate::Result;
use crate::store::records;
use crate::store::runs::SubState;
use crate::store::webhooks::{self, Queued};

/// Queued webhook refetches handled per request.
pub const REFETCH_BATCH: usize = 40;

impl Engine<'_> {
    /// Applies the webhook refetch queue, a batch at a time. Returns what it did and whether
    /// a child subscription saw records it does not know yet (the caller then polls).
    pub async fn drain_queue(&self, state: &SubState) -> Result<(Outcome, bool)> {
        let mut outcome = Outcome::default();
        let mut unknown = false;
        loop {
            self.cancelled()?;
            let name = self.plan.name.clone();
            let batch = self
                .runtime
                .store
                .read(move |conn| webhooks::queued(conn, &name, REFETCH_BATCH))
                .await?;
            if batch.is_empty() {
                return Ok((outcome, unknown));
            }
            let (done, saw_unknown) = self.refetch(&batch, state).await?;
            outcome.fetched += done.fetched;
            outcome.requests += done.requests;
            outcome.applied += done.applied;
            unknown |= saw_unknown;
        }
    }

    /// One batch of targeted refetches: the records' archive rows (with the subscription's
    /// filter), their entities (entity shape), and a confirmed delete for each announced
    /// record that is no longer listed.
    pub(super) async fn refetch(
        &self,
        batch: &[Queued],
        state: &SubState,
    ) -> Result<(Outcome, bool)> {
        let mut outcome = Outcome::default();
        let ids: Vec<i64> = batch.iter().map(|q| q.id).collect();
        let key = self.plan.kind.primary_key();
        let filter = ids
            .iter()
            .map(|id| format!("{key} eq {id}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let child = self.plan.parent.is_some();
        let (source, base) = if child {
            // The scope filter needs a parent; look the records up by key only and keep
            // those this subscription already holds (new ones come with the next pass).
            (
                Source::List(self.plan.kind.name().to_string()),
                Query::new().select(self.plan.select.iter().cloned()),
            )
        } else {
            (
                self.plan.source(None)?,
                self.plan.base_query(&self.plan.select, None, None)?,
            )
        };
        let base = base.filter(Filter::raw(format!("({filter})")));
        let name = self.plan.name.clone();
        let lookup = ids.clone();
        let stored = self
            .runtime
            .store
            .read(move |conn| records::stored(conn, &name, &lookup))
            .await?;
        let (rows, mut read_at) = self.fetch(&source, &base, ids.len() as u32).await?;
        outcome.requests += 1;
        outcome.fetched += rows.len() as u64;
        // Entity shape settles relative to when the newest event arrived (see SETTLE): the
        // edit it announces happened before that.
        if let Some(newest) = batch.iter().map(|q| q.queued_at.at()).max() {
            let age = (Utc::now() - newest).to_std().unwrap_or_default();
            if let Some(received) = Instant::now().checked_sub(age.min(SETTLE)) {
                read_at = read_at.min(received);
            }
        }
        let mut unknown = false;
        let present: BTreeSet<i64> = rows.iter().filter_map(|r| self.plan.row_id(r)).collect();
        let rows: Vec<Row> = rows
            .into_iter()
            .filter(|r| {
                let known = self
                    .plan
                    .row_id(r)
                    .is_some_and(|id| stored.get(&id).is_some_and(|s| !s.deleted));
                if child && !known {
                    unknown = true;
                }
                !child || known
            })
            .collect();
        let Built {
            mut write,
            requests,
            ..
        } = self.build(rows, read_at, None, true).await?;
        outcome.requests += requests;
        // Announced but not listed: deleted, or outside the filter. Confirm before deleting.
        let missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !present.contains(id) && stored.get(id).is_some_and(|s| !s.deleted))
            .collect();
        if !missing.is_empty() {
            let (confirmed, requests) = self.confirm_deleted(missing, None).await?;
            outcome.requests += requests;
            if state.degraded.is_some() {
                if !confirmed.is_empty() {
                    tracing::warn!(subscription = %self.plan.name, deletes = confirmed.len(), "degraded: holding back webhook-confirmed deletes until `syncd reconcile`");
                }
            } else {
                let name = self.plan.name.clone();
                let live = self
                    .runtime
                    .store
                    .read(move |conn| records::live_count(conn, &name))
                    .await?;
                if self.trips(confirmed.len() as u64, live) {
                    let reason =
                        self.breaker_reason(&confirmed.len().to_string(), live, "webhooks");
                    self.degrade(&reason).await?;
                } else {
                    write.deletes.extend(confirmed);
                }
            }
        }
        write.dequeue = batch.iter().map(|q| (q.id, q.event_id.clone())).collect();
        outcome.applied += self.commit(write).await?;
        Ok((outcome, unknown))
    }
}
