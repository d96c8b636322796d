//! The delete reconcile: scan primary keys only, diff with the live records, confirm each
//! candidate, then delete, unless the mass-delete breaker trips.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::engine::{Engine, Outcome};
use super::plan::ParentRecord;
use crate::Result;
use crate::store::records;
use crate::store::runs::SubState;
use crate::store::types::UtcTime;

impl Engine<'_> {
    /// Reconcile: scan primary keys only, diff with the live records, confirm each candidate,
    /// then delete — unless the breaker trips (then the subscription is degraded and nothing
    /// is deleted). `force` (an operator's `syncd reconcile` while degraded) skips the breaker
    /// and lifts the degraded state. Returns the outcome and whether the breaker tripped.
    pub async fn reconcile(&self, state: &SubState, force: bool) -> Result<(Outcome, bool)> {
        let mut outcome = Outcome::default();
        let select = vec![self.plan.kind.primary_key().to_string()];
        let mut candidates: Vec<i64> = Vec::new();
        let mut scopes: Vec<Option<ParentRecord>> = Vec::new();
        match &self.plan.parent {
            None => scopes.push(None),
            Some(parent_subscription) => {
                let mut from = i64::MIN;
                loop {
                    let parent_name = parent_subscription.clone();
                    let batch = self
                        .runtime
                        .store
                        .read(move |conn| records::parents(conn, &parent_name, from, 500))
                        .await?;
                    let Some(last) = batch.last().map(|(id, _)| *id) else {
                        break;
                    };
                    for (id, json) in batch {
                        let json = match serde_json::from_str(&json) {
                            Ok(Value::Object(map)) => map,
                            _ => Map::new(),
                        };
                        scopes.push(Some(ParentRecord {
                            id,
                            json,
                            subscription: parent_subscription.clone(),
                        }));
                    }
                    from = last.saturating_add(1);
                }
            }
        }
        for scope in &scopes {
            let parent = scope.as_ref();
            let source = self.plan.source(parent)?;
            let base = self.plan.base_query(&select, parent, None)?;
            let mut pages = self.keyset(source, base, None, true);
            let mut after: Option<i64> = None;
            loop {
                self.cancelled()?;
                self.alive();
                let Some(page) = self.next_page(&mut pages).await? else {
                    break;
                };
                outcome.requests += page.requests;
                outcome.fetched += page.rows.len() as u64;
                let seen: BTreeSet<i64> = page
                    .rows
                    .iter()
                    .filter_map(|r| self.plan.row_id(r))
                    .collect();
                let upto = if page.more { page.last } else { None };
                let name = self.plan.name.clone();
                let parent_id = parent.map(|p| p.id);
                let live = self
                    .runtime
                    .store
                    .read(move |conn| {
                        records::live_ids_between(conn, &name, parent_id, after, upto)
                    })
                    .await?;
                candidates.extend(live.into_iter().filter(|id| !seen.contains(id)));
                if !page.more {
                    break;
                }
                after = upto;
            }
        }
        if let Some(parent_subscription) = &self.plan.parent {
            let name = self.plan.name.clone();
            let parent_name = parent_subscription.clone();
            let orphans = self
                .runtime
                .store
                .read(move |conn| records::orphans(conn, &name, &parent_name))
                .await?;
            candidates.extend(orphans);
        }
        candidates.sort_unstable();
        candidates.dedup();
        let name = self.plan.name.clone();
        let live = self
            .runtime
            .store
            .read(move |conn| records::live_count(conn, &name))
            .await?;
        let degraded = state.degraded.is_some();
        let check_breaker = !(force && degraded);
        let limit = {
            let m = self.plan.mass_delete;
            m.absolute
                .min(((live.max(0) as f64) * m.percent / 100.0).floor() as u64)
        };
        let (confirmed, requests) = if candidates.is_empty() {
            (Vec::new(), 0)
        } else {
            self.confirm_deleted(candidates, check_breaker.then_some(limit))
                .await?
        };
        outcome.requests += requests;
        if check_breaker && self.trips(confirmed.len() as u64, live) {
            let at_least = if confirmed.len() as u64 > limit {
                "at least "
            } else {
                ""
            };
            let reason =
                self.breaker_reason(&format!("{at_least}{}", confirmed.len()), live, "reconcile");
            self.degrade(&reason).await?;
            return Ok((outcome, true));
        }
        let mut write = self.page_write(None);
        write.reconciled = true;
        write.unannounced = self.unannounced_since();
        write.deletes = confirmed;
        write.clear_degraded = degraded;
        outcome.applied += self.commit(write).await?;
        // Echoes older than a day were seen by every poll that could see them.
        let kind = self.plan.kind;
        let before = UtcTime::now().minus(chrono::Duration::days(1));
        self.runtime
            .store
            .write(move |tx| records::expire_echoes(tx, kind, before))
            .await?;
        if degraded {
            self.runtime.metrics.set(
                "syncd_subscription_degraded",
                &[("subscription", self.plan.name.as_str())],
                0.0,
            );
            tracing::info!(subscription = %self.plan.name, "reconcile applied by request; the breaker is lifted");
        }
        Ok((outcome, false))
    }
}
