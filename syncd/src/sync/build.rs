//! Turning archive rows into a page write: row shape directly, entity shape by fetching the
//! entities whose timestamps moved once they settled (see [`SETTLE`]), each through the
//! subscription's transform (a failing record is quarantined in the page's transaction).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::Value;
use superoffice::odata::Row;

use super::engine::{Engine, earlier, instant_of, shutting_down};
use super::plan::entity_deleted;
use crate::config::Shape;
use crate::hash::{canonical_text_and_hash, entity_hash, strip_metadata};
use crate::store::records::{self, PageWrite, Upsert};
use crate::transform::Failure;
use crate::{Error, Result};

/// Entity shape: an entity is fetched no sooner than this after the page (or webhook) that
/// showed its new timestamp arrived, so a second edit within the same (second-precision)
/// timestamp is already in what we fetch; a later edit carries a later timestamp.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Rows whose source timestamp is older than this need no settling (covers any time-zone
/// offset between the server's timestamps and our clock).
const SETTLE_HORIZON_HOURS: i64 = 15;

/// An entity-shape row to consider fetching: its key and source timestamp.
type Wanted = (i64, Option<String>);

/// A fetched entity: its key, the row's source timestamp and the entity (`None`: gone).
type Fetched = (i64, Option<String>, Option<Value>);

/// A page turned into a write.
#[derive(Debug)]
pub(super) struct Built {
    pub(super) write: PageWrite,
    pub(super) max: Option<String>,
    pub(super) floor: Option<String>,
    pub(super) requests: u64,
}

impl Engine<'_> {
    /// What a record stores: the transform's output as canonical JSON and its hash; `None`
    /// when the transform skips the record, or when it failed or ran out of its budget: then
    /// the record goes to `write.quarantine` (stored in the page's transaction, so the page
    /// and the cursor move on). `held`: the input a quarantined record failed with; when the
    /// record has not changed since, the transform is not run again (a record that made its
    /// transform loop would otherwise cost a thread on every pass that re-reads it); only a
    /// change or `syncd quarantine retry` runs it again. Fails only when no transform can run
    /// at all.
    pub(super) async fn stored(
        &self,
        write: &mut PageWrite,
        id: i64,
        value: Value,
        modified: Option<String>,
        held: Option<&String>,
    ) -> Result<Option<Upsert>> {
        if let Some(held) = held
            && canonical_text_and_hash(&value).0 == *held
        {
            return Ok(None);
        }
        let raw = self.plan.transform.is_some().then(|| value.clone());
        let output = match self.plan.transform(value).await {
            Ok(output) => output,
            Err(Failure::Unavailable(reason)) => {
                return Err(Error::Degraded {
                    subscription: self.plan.name.clone(),
                    reason,
                });
            }
            Err(failure) => {
                let error = failure.to_string();
                tracing::warn!(subscription = %self.plan.name, id, %error, "transform failed; record quarantined");
                let json = raw
                    .map(|v| canonical_text_and_hash(&v).0)
                    .unwrap_or_default();
                write.quarantine.push(records::Rejected { id, json, error });
                return Ok(None);
            }
        };
        if raw.is_some() {
            write.transformed.push(id);
        }
        Ok(output.map(|stored| {
            let (json, hash) = canonical_text_and_hash(&stored);
            Upsert {
                id,
                json,
                hash,
                modified,
                entity_hash: None,
            }
        }))
    }

    /// GETs an entity: `Ok(None)` when it is gone (404).
    pub(super) async fn get_entity(&self, id: i64) -> Result<Option<Value>> {
        let id32 = i32::try_from(id).map_err(|_| Error::IdRange {
            kind: self.plan.kind,
            id,
        })?;
        match self.client.entities(self.plan.kind).get(id32).await {
            Ok(value) => Ok(Some(value)),
            Err(superoffice::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Turns archive rows into stored records and deletes: row shape directly, entity shape
    /// by fetching the entities whose timestamps moved (or all of them with `refetch_all`).
    ///
    /// Entity shape and same-second edits: an entity is fetched only when the server's clock
    /// has provably passed the second of its timestamp, so a later edit in that same second is
    /// in what we fetch and any later one carries a later timestamp. The server's clock is at
    /// least our clock plus the largest (timestamp read − our clock when it was read) seen so
    /// far; a row is fetched once its timestamp is [`SETTLE`] below that bound (or older than
    /// [`SETTLE_HORIZON_HOURS`]). A page never waits: a row changed within the last second is
    /// left for a later pass (its timestamp becomes the `floor` the next window starts from).
    /// Targeted refetches (`refetch_all`) instead wait until [`SETTLE`] after `read_at`.
    ///
    /// Returns the page write, the highest source timestamp of the page, the lowest timestamp
    /// of a row left for the next pass, and the number of entity requests made.
    pub(super) async fn build(
        &self,
        rows: Vec<Row>,
        read_at: Instant,
        parent: Option<i64>,
        refetch_all: bool,
    ) -> Result<Built> {
        let mut write = self.page_write(parent);
        write.upserts.reserve(rows.len());
        let held = self.held_inputs(&rows, refetch_all).await?;
        let (max, wanted) = self.apply_rows(&mut write, rows, &held).await?;
        let mut built = Built {
            write,
            max,
            floor: None,
            requests: 0,
        };
        if wanted.is_empty() {
            return Ok(built);
        }
        let changed = self.changed_entities(wanted, refetch_all).await?;
        let settled = self.settled_test();
        let mut fetch = Vec::with_capacity(changed.len());
        for (id, modified) in changed {
            if refetch_all || settled(&modified) {
                fetch.push((id, modified));
            } else {
                built.floor = earlier(built.floor, modified);
            }
        }
        if fetch.is_empty() {
            return Ok(built);
        }
        if refetch_all && !fetch.iter().all(|(_, m)| settled(m)) {
            self.wait_settled(read_at).await?;
        }
        built.requests += fetch.len() as u64;
        let fetched = self.fetch_entities(fetch).await?;
        self.apply_entities(&mut built.write, fetched, &held)
            .await?;
        built.write.upserts.sort_by_key(|u| u.id);
        built.write.deletes.sort_unstable();
        Ok(built)
    }

    /// The inputs quarantined records of `rows` failed with (see [`Engine::stored`]); none
    /// for targeted refetches (they run the transform again) or without a transform.
    async fn held_inputs(&self, rows: &[Row], refetch_all: bool) -> Result<HashMap<i64, String>> {
        if self.plan.transform.is_some() && !refetch_all {
            let ids: Vec<i64> = rows.iter().filter_map(|r| self.plan.row_id(r)).collect();
            let name = self.plan.name.clone();
            self.runtime
                .store
                .read(move |conn| crate::store::quarantine::inputs(conn, &name, &ids))
                .await
        } else {
            Ok(Default::default())
        }
    }

    /// Goes through the archive rows: deleted rows become deletes, row shape rows become
    /// upserts (through the transform). Returns the highest source timestamp of the rows and,
    /// for entity shape, the (key, timestamp) of every other row (the entities to consider
    /// fetching).
    async fn apply_rows(
        &self,
        write: &mut PageWrite,
        rows: Vec<Row>,
        held: &HashMap<i64, String>,
    ) -> Result<(Option<String>, Vec<Wanted>)> {
        let mut newest: Option<(chrono::DateTime<Utc>, String)> = None;
        let mut wanted: Vec<Wanted> = Vec::new();
        for row in rows {
            // The SDK refused pages with rows lacking their key (`Error::MissingKey`); none is
            // skipped here.
            let Some(id) = self.plan.row_id(&row) else {
                continue;
            };
            let modified = self.plan.row_modified_text(&row).map(|(at, text)| {
                if newest.as_ref().is_none_or(|(n, _)| at > *n) {
                    newest = Some((at, text.clone()));
                }
                text
            });
            if self.plan.row_deleted(&row) {
                write.deletes.push(id);
                continue;
            }
            match self.plan.shape {
                Shape::Row => {
                    let json = self.plan.row_json(row);
                    if let Some(stored) = self
                        .stored(write, id, json, modified, held.get(&id))
                        .await?
                    {
                        write.upserts.push(stored);
                    }
                }
                Shape::Entity => wanted.push((id, modified)),
            }
        }
        Ok((newest.map(|(_, text)| text), wanted))
    }

    /// The entities of `wanted` whose timestamp differs from the stored record's (or that are
    /// not stored, or deleted); all of them with `refetch_all`.
    async fn changed_entities(
        &self,
        wanted: Vec<Wanted>,
        refetch_all: bool,
    ) -> Result<Vec<Wanted>> {
        let ids: Vec<i64> = wanted.iter().map(|(id, _)| *id).collect();
        let name = self.plan.name.clone();
        let stored = self
            .runtime
            .store
            .read(move |conn| records::stored(conn, &name, &ids))
            .await?;
        Ok(wanted
            .into_iter()
            .filter(|(id, modified)| {
                refetch_all
                    || stored
                        .get(id)
                        .is_none_or(|s| s.deleted || s.modified != *modified)
            })
            .collect())
    }

    /// Whether an entity with this timestamp has settled: older than
    /// [`SETTLE_HORIZON_HOURS`], or at least [`SETTLE`] below the server's clock as estimated
    /// now (see [`Engine::build`]).
    fn settled_test(&self) -> impl Fn(&Option<String>) -> bool + use<> {
        let horizon = Utc::now() - chrono::Duration::hours(SETTLE_HORIZON_HOURS);
        let ahead = self
            .server_ahead_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let server_passed = (ahead != i64::MIN).then(|| {
            Utc::now() + chrono::Duration::milliseconds(ahead)
                - chrono::Duration::from_std(SETTLE).unwrap_or_default()
        });
        move |modified: &Option<String>| {
            modified
                .as_deref()
                .and_then(instant_of)
                .is_some_and(|at| at < horizon || server_passed.is_some_and(|p| at <= p))
        }
    }

    /// Targeted refetches: waits until [`SETTLE`] after `read_at` (an error on shutdown).
    async fn wait_settled(&self, read_at: Instant) -> Result<()> {
        tokio::select! {
            _ = tokio::time::sleep_until((read_at + SETTLE).into()) => Ok(()),
            _ = self.shutdown.cancelled() => Err(shutting_down()),
        }
    }

    /// GETs the entities (at most `concurrency` at a time): (key, timestamp, the entity or
    /// `None` when it is gone).
    async fn fetch_entities(&self, fetch: Vec<Wanted>) -> Result<Vec<Fetched>> {
        stream::iter(fetch.into_iter().map(|(id, modified)| async move {
            self.get_entity(id).await.map(|v| (id, modified, v))
        }))
        .buffer_unordered(self.plan.concurrency)
        .try_collect()
        .await
    }

    /// Fetched entities into the write: gone or deleted ones as deletes, the others as
    /// upserts (through the transform) carrying their entity hash for echo detection.
    async fn apply_entities(
        &self,
        write: &mut PageWrite,
        fetched: Vec<Fetched>,
        held: &HashMap<i64, String>,
    ) -> Result<()> {
        for (id, modified, entity) in fetched {
            match entity {
                None => write.deletes.push(id),
                Some(entity) if entity_deleted(self.plan.kind, &entity) => write.deletes.push(id),
                Some(entity) => {
                    let entity = strip_metadata(entity);
                    // Without a transform the stored document is the entity itself, so its
                    // hash is the entity hash: computed once.
                    let raw_hash = self.plan.transform.is_some().then(|| entity_hash(&entity));
                    if let Some(mut stored) = self
                        .stored(write, id, entity, modified, held.get(&id))
                        .await?
                    {
                        stored.entity_hash = Some(raw_hash.unwrap_or_else(|| stored.hash.clone()));
                        write.upserts.push(stored);
                    }
                }
            }
        }
        Ok(())
    }
}
