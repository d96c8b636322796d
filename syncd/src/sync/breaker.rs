//! Deletes are never taken on trust: every record a pass would delete without the archive
//! saying so is confirmed (GET answers 404 or shows it deleted), and the mass-delete breaker
//! degrades the subscription instead of applying more deletes than its limits allow.

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt};
use superoffice::odata::{Filter, Query};
use superoffice::paginate::Source;

use super::engine::Engine;
use super::plan::entity_deleted;
use super::refetch::REFETCH_BATCH;
use crate::Result;
use crate::store::runs;
use crate::store::types::UtcTime;

impl Engine<'_> {
    /// Whether `n` deletes trip the mass-delete breaker with `live` rows stored.
    pub fn trips(&self, n: u64, live: i64) -> bool {
        let m = self.plan.mass_delete;
        n > m.absolute || (n as f64) > (live.max(0) as f64) * m.percent / 100.0
    }

    pub(super) fn breaker_reason(&self, n: &str, live: i64, source: &str) -> String {
        let m = self.plan.mass_delete;
        format!(
            "mass-delete breaker: {source} would delete {n} of {live} records (limit: more than {}% or {}); nothing was deleted. Check the tenant, then run `syncd reconcile {}` to apply the deletes or `syncd resync {}` to reload",
            m.percent, m.absolute, self.plan.name, self.plan.name
        )
    }

    pub(super) async fn degrade(&self, reason: &str) -> Result<()> {
        let name = self.plan.name.clone();
        let text = reason.to_string();
        self.runtime
            .store
            .write(move |tx| runs::degrade(tx, &name, &text, UtcTime::now()))
            .await?;
        self.runtime.metrics.set(
            "syncd_subscription_degraded",
            &[("subscription", self.plan.name.as_str())],
            1.0,
        );
        tracing::error!(subscription = %self.plan.name, %reason, "subscription degraded");
        Ok(())
    }

    /// Confirms that records are gone: GET answers 404 or shows them deleted (kinds without
    /// GET by id: the archive no longer lists them). Stops once more than `stop_after` are
    /// confirmed. Returns the confirmed ids and the requests made.
    pub(super) async fn confirm_deleted(
        &self,
        ids: Vec<i64>,
        stop_after: Option<u64>,
    ) -> Result<(Vec<i64>, u64)> {
        let mut confirmed = Vec::new();
        let mut requests = 0;
        if !self.plan.kind.supports_get() {
            let key = self.plan.kind.primary_key();
            for chunk in ids.chunks(REFETCH_BATCH) {
                let filter = chunk
                    .iter()
                    .map(|id| format!("{key} eq {id}"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                let query = Query::new()
                    .select([key])
                    .filter(Filter::raw(format!("({filter})")));
                let (rows, _) = self
                    .fetch(
                        &Source::List(self.plan.kind.name().to_string()),
                        &query,
                        chunk.len() as u32,
                    )
                    .await?;
                requests += 1;
                let present: BTreeSet<i64> =
                    rows.iter().filter_map(|r| self.plan.row_id(r)).collect();
                confirmed.extend(chunk.iter().filter(|id| !present.contains(id)));
            }
            return Ok((confirmed, requests));
        }
        let mut results = stream::iter(ids.into_iter().map(|id| async move {
            self.get_entity(id).await.map(|entity| {
                let gone = entity
                    .as_ref()
                    .is_none_or(|e| entity_deleted(self.plan.kind, e));
                (id, gone)
            })
        }))
        .buffer_unordered(self.plan.concurrency);
        while let Some(result) = results.next().await {
            let (id, gone) = result?;
            requests += 1;
            if gone {
                confirmed.push(id);
                if stop_after.is_some_and(|limit| confirmed.len() as u64 > limit) {
                    break;
                }
            }
            self.alive();
        }
        confirmed.sort_unstable();
        Ok((confirmed, requests))
    }
}
